//! The routes: one table per area (a module each), and each route in one
//! place ([`Route`]): its method and path template, its authorization
//! [`Policy`], its OpenAPI operation and its handler. The router
//! ([`router`]), the authorization layer and the OpenAPI document
//! (`openapi::paths`) all read the tables, so a route cannot be served
//! without a policy, nor documented apart from what is served.

pub mod console;
pub mod docs;
pub mod health;
pub mod migration;
pub mod reconciliation;
pub mod records;
pub mod webhooks;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Serialize;
use serde_json::{Value, json};

use crate::authz::{self, Guard, Policy};
use crate::openapi::Operation;
use crate::{ApiError, AppState};

/// Everything about one route.
pub struct Route {
    pub method: Method,
    pub path: String,
    pub policy: Policy,
    pub doc: Doc,
    handler: MethodRouter<AppState>,
}

/// How a route appears in the OpenAPI document.
pub enum Doc {
    Operation(Operation),
    /// Not an operation of the API: the document itself, and the pages and
    /// assets of the documentation and the console.
    Page,
}

impl Route {
    /// Every part is an argument: a route without a policy or a document
    /// entry does not compile.
    pub fn new<H, T>(
        method: Method,
        path: impl Into<String>,
        policy: Policy,
        doc: Doc,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
        Self {
            method,
            path: path.into(),
            policy,
            doc,
            handler: on(filter, handler),
        }
    }
}

/// Every route of the API, area by area.
pub fn all() -> Vec<Route> {
    [
        health::routes(),
        docs::routes(),
        console::routes(),
        migration::routes(),
        records::routes(),
        reconciliation::routes(),
        webhooks::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The router of every route, each behind its own policy.
pub fn router(state: &AppState) -> Router<AppState> {
    all().into_iter().fold(Router::new(), |router, route| {
        let handler = match route.policy {
            Policy::Public => route.handler,
            policy => route
                .handler
                .route_layer(axum::middleware::from_fn_with_state(
                    Guard::new(state.clone(), policy),
                    authz::authorize,
                )),
        };
        router.route(&route.path, handler)
    })
}

/// A page of a list in the vendor's shape, with `url` the list's path. With
/// more to come, `next_cursor` is where the next page in the same direction
/// starts: the last item's cursor (the `starting_after` of the next page), or
/// for a page read with `ending_before`, the first item's (the
/// `ending_before` of the page before it).
pub(crate) fn list_page<T: Serialize, C: Serialize>(
    url: &str,
    backward: bool,
    data: &[T],
    has_more: bool,
    cursor: impl Fn(&T) -> C,
) -> Value {
    let next_cursor = match (has_more, backward) {
        (false, _) => None,
        (true, false) => data.last().map(&cursor),
        (true, true) => data.first().map(&cursor),
    };
    json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": url,
        "next_cursor": next_cursor,
    })
}

/// Any path no route knows.
pub async fn fallback() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; see the API reference for the routes",
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_route_a_key_calls_is_documented() {
        for route in all() {
            if route.policy != Policy::Public {
                assert!(
                    matches!(route.doc, Doc::Operation(_)),
                    "{} {} needs a key but is not in the document",
                    route.method,
                    route.path
                );
            }
        }
    }

    #[test]
    fn no_route_is_in_the_table_twice() {
        let mut seen = HashSet::new();
        for route in all() {
            assert!(
                seen.insert((route.method.clone(), route.path.clone())),
                "{} {} is in the table twice",
                route.method,
                route.path
            );
        }
    }
}
