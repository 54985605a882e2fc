//! Typed extractors for what a route reads from its path and query string:
//! the id a path names, a list's paging, and query parameters. Each refuses a
//! bad value with a 400 in the documented envelope, naming the parameter, so
//! no handler parses them by hand.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::str::FromStr;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use domain::PageFrom;
use uuid::Uuid;

use crate::ApiError;

/// The query string of a request, as named parameters.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request("invalid_query", format!("the query string is invalid: {e}"))
            })?;
        // Postgres text cannot hold a NUL: a filter carrying one is refused
        // here rather than failing its query.
        if let Some((name, _)) = query
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::bad_request(
                "invalid_character",
                "the query string contains a NUL character, which cannot be stored or matched",
            )
            .param(name.replace('\0', "\\u0000")));
        }
        Ok(Self(query))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `true` or `false`; `false` when absent.
    pub fn flag(&self, name: &'static str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid(
                name,
                format!("{name} must be true or false, got '{other}'"),
            )),
        }
    }

    /// A value parsed with its type's own error message.
    pub fn parsed<T>(&self, name: &'static str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .map(|raw| {
                raw.parse::<T>()
                    .map_err(|e| ApiError::invalid(name, e.to_string()))
            })
            .transpose()
    }

    /// A value `parse` reads, refused with "`name` must be `expected`".
    pub fn read<T>(
        &self,
        name: &'static str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|raw| {
                parse(raw).ok_or_else(|| {
                    ApiError::invalid(name, format!("{name} must be {expected}, got '{raw}'"))
                })
            })
            .transpose()
    }
}

/// What the `starting_after` of a list names.
pub trait Cursor {
    type Value;
    /// How the value is described when it is refused.
    const EXPECTED: &'static str;

    fn parse(raw: &str) -> Option<Self::Value>;
}

/// A list's page, as the vendor's `concepts/pagination` page has it: `limit`
/// (1 to 100, 20 when absent) and at most one of `starting_after` (the page
/// after that item) and `ending_before` (the page before it).
pub struct Paging<C: Cursor> {
    pub limit: u32,
    pub from: Option<PageFrom<C::Value>>,
    /// The list's path, the `url` of its answer.
    pub url: String,
    /// The rest of the query string: the list's filters.
    pub params: Params,
    cursor: PhantomData<C>,
}

impl<C: Cursor> Paging<C> {
    /// The parameter the cursor was given in, for its errors.
    pub fn cursor_param(&self) -> &'static str {
        match self.from {
            Some(PageFrom::Before(_)) => "ending_before",
            _ => "starting_after",
        }
    }
}

impl<S: Send + Sync, C: Cursor> FromRequestParts<S> for Paging<C> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = Params::from_request_parts(parts, state).await?;
        let limit = params
            .read("limit", "an integer from 1 to 100", |raw| {
                raw.parse::<u32>().ok().filter(|n| (1..=100).contains(n))
            })?
            .unwrap_or(20);
        let starting_after = params.read("starting_after", C::EXPECTED, C::parse)?;
        let ending_before = params.read("ending_before", C::EXPECTED, C::parse)?;
        let from = match (starting_after, ending_before) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "ending_before",
                    "give starting_after or ending_before, not both",
                ));
            }
            (Some(after), None) => Some(PageFrom::After(after)),
            (None, Some(before)) => Some(PageFrom::Before(before)),
            (None, None) => None,
        };
        Ok(Self {
            limit,
            from,
            url: parts.uri.path().to_owned(),
            params,
            cursor: PhantomData,
        })
    }
}

/// Declares a cursor of ids: `starting_after` is the UUID of an item.
macro_rules! id_cursor {
    ($(#[$meta:meta])* $name:ident, $expected:literal) => {
        $(#[$meta])*
        pub struct $name;

        impl Cursor for $name {
            type Value = Uuid;
            const EXPECTED: &'static str = $expected;

            fn parse(raw: &str) -> Option<Uuid> {
                Uuid::parse_str(raw).ok()
            }
        }
    };
}

id_cursor!(
    /// The jobs of an entity.
    JobCursor,
    "a job id (UUID)"
);
id_cursor!(
    /// The records of a resource.
    RecordCursor,
    "a record id (UUID)"
);
id_cursor!(
    /// The deliveries of a webhook endpoint.
    DeliveryCursor,
    "a delivery id (UUID)"
);

/// The errors of a job, by record index.
pub struct ErrorCursor;

impl Cursor for ErrorCursor {
    type Value = u32;
    const EXPECTED: &'static str = "a record index (a whole number)";

    fn parse(raw: &str) -> Option<u32> {
        raw.parse().ok()
    }
}

/// Declares the extractor of a UUID the path names by `$param`.
macro_rules! path_id {
    ($(#[$meta:meta])* $name:ident, $param:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub Uuid);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                path_uuid(parts, state, $param).await.map($name)
            }
        }
    };
}

path_id!(
    /// `{job_id}`
    JobId,
    "job_id"
);
path_id!(
    /// `{endpoint_id}`
    EndpointId,
    "endpoint_id"
);
path_id!(
    /// `{id}`, a record's
    RecordId,
    "id"
);

async fn path_uuid<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    param: &'static str,
) -> Result<Uuid, ApiError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_path", format!("the path is invalid: {e}")))?;
    let raw = params
        .get(param)
        .ok_or_else(|| ApiError::internal(&format!("the route has no {{{param}}}")))?;
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(param, format!("{param} must be a UUID, got '{raw}'")))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    async fn paging<C: Cursor>(query: &str) -> Result<Paging<C>, ApiError> {
        let (mut parts, ()) = Request::get(format!("/x?{query}"))
            .body(())
            .expect("request")
            .into_parts();
        Paging::<C>::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn paging_defaults_and_bounds() {
        let page = paging::<JobCursor>("").await.expect("no paging");
        assert_eq!((page.limit, page.from, page.url.as_str()), (20, None, "/x"));
        let page = paging::<ErrorCursor>("limit=100&starting_after=7")
            .await
            .expect("valid");
        assert_eq!((page.limit, page.from), (100, Some(PageFrom::After(7))));
        let page = paging::<ErrorCursor>("ending_before=7")
            .await
            .expect("valid");
        assert_eq!(
            (page.from, page.cursor_param()),
            (Some(PageFrom::Before(7)), "ending_before")
        );
        let Err(e) = paging::<ErrorCursor>("starting_after=3&ending_before=7").await else {
            panic!("both cursors accepted")
        };
        assert_eq!(e.param.as_deref(), Some("ending_before"));
        for bad in ["limit=0", "limit=101", "limit=ten", "limit=-1"] {
            let Err(e) = paging::<JobCursor>(bad).await else {
                panic!("{bad} accepted")
            };
            assert_eq!(
                (e.code.as_ref(), e.param.as_deref()),
                ("invalid_parameter", Some("limit"))
            );
        }
        let Err(e) = paging::<RecordCursor>("starting_after=7").await else {
            panic!("a cursor that is not a UUID accepted")
        };
        assert_eq!(e.param.as_deref(), Some("starting_after"));
        assert!(e.message.contains("a record id (UUID)"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_nul_in_the_query_is_refused() {
        let (mut parts, ()) = Request::get("/x?external_source=a%00b")
            .body(())
            .expect("request")
            .into_parts();
        let Err(e) = Params::from_request_parts(&mut parts, &()).await else {
            panic!("a NUL accepted")
        };
        assert_eq!(
            (e.code.as_ref(), e.param.as_deref()),
            ("invalid_character", Some("external_source"))
        );
    }

    #[tokio::test]
    async fn flags_are_true_or_false() {
        let (mut parts, ()) = Request::get("/x?a=true&b=yes")
            .body(())
            .expect("request")
            .into_parts();
        let params = Params::from_request_parts(&mut parts, &())
            .await
            .expect("query");
        assert!(params.flag("a").expect("true"));
        assert!(!params.flag("c").expect("absent"));
        let e = params.flag("b").expect_err("yes");
        assert_eq!(e.param.as_deref(), Some("b"));
    }
}
