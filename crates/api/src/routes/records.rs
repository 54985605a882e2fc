//! The records themselves: list and read every resource and the chart of
//! accounts, and create one record through the same canonical handler the
//! bulk import uses.

use auth::Principal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::audit::Actor;
use domain::error::{HandlerError, RecordError, RecordErrorKind};
use domain::import::{SingleContext, ignored_in_single};
use domain::read::{self, ReadError, ReadFilter, Readable};
use domain::{PageFrom, Resource};
use serde_json::{Value, json};

use crate::authz::Policy;
use crate::error::ErrorType;
use crate::extract::{Paging, Params, RecordCursor, RecordId};
use crate::openapi::{self, Operation, query, reference};
use crate::request::{body_error, inspect_record};
use crate::routes::migration::strict_parameter;
use crate::routes::{Doc, Route};
use crate::{ApiError, AppState, context};

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for resource in Resource::ALL {
        let what = Readable::Resource(resource);
        let name = resource.as_str();
        let schema = openapi::schema_name(resource);
        let list_path = format!("/v1/entities/{{entity_id}}/{name}");
        routes.extend([
            Route::new(
                Method::GET,
                &list_path,
                Policy::Scopes(vec![resource.read_scopes()]),
                Doc::Operation(
                    Operation::new("records", format!("List {name}."))
                        .parameters(list_parameters(what))
                        .responds("200", "A page.", reference(&format!("{schema}List"))),
                ),
                move |state, principal, query| list(what, state, principal, query),
            ),
            Route::new(
                Method::POST,
                &list_path,
                Policy::Scopes(vec![resource.write_scopes()]),
                Doc::Operation(
                    Operation::new(
                        "records",
                        format!("Create one record of {name} through the canonical handler."),
                    )
                    .parameters([strict_parameter()])
                    .request(openapi::single_create_payload(resource))
                    .responds(
                        "201",
                        "The record, and the fields of the request it did not keep.",
                        openapi::created_record(schema),
                    )
                    .errors(&[
                        ("409", "external_id_conflict, duplicate_sku, ..."),
                        ("413", "payload_too_large."),
                        ("422", "A rule of the resource: see code and param."),
                    ]),
                ),
                move |state, principal, params, headers, body| {
                    create(resource, state, principal, params, headers, body)
                },
            ),
            Route::new(
                Method::GET,
                format!("{list_path}/{{id}}"),
                Policy::Scopes(vec![resource.read_scopes()]),
                Doc::Operation(
                    Operation::new("records", format!("Get one record of {name}."))
                        .responds("200", "The record.", reference(schema))
                        .errors(&[("404", "not_found.")]),
                ),
                move |state, principal, path| fetch(what, state, principal, path),
            ),
        ]);
    }
    let chart = Readable::GlAccounts;
    routes.extend([
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/gl-accounts",
            Policy::Scopes(vec![&["accounting:read"]]),
            Doc::Operation(
                Operation::new("ledger", "List the chart of accounts.")
                    .parameters(list_parameters(chart))
                    .responds("200", "A page.", reference("GlAccountList")),
            ),
            move |state, principal, query| list(chart, state, principal, query),
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/gl-accounts/{id}",
            Policy::Scopes(vec![&["accounting:read"]]),
            Doc::Operation(
                Operation::new("ledger", "Get a GL account.")
                    .responds("200", "The account.", reference("GlAccount"))
                    .errors(&[("404", "not_found.")]),
            ),
            move |state, principal, path| fetch(chart, state, principal, path),
        ),
    ]);
    routes
}

/// The query parameters of a list: its page, and what [`read_filter`] reads.
fn list_parameters(what: Readable) -> Vec<Value> {
    let mut parameters = openapi::paging();
    parameters.push(query(
        "include_count",
        "true adds total_count.",
        json!({"type": "boolean"}),
    ));
    if what.has_provenance() {
        parameters.push(query(
            "external_source",
            "Only records from this source.",
            json!({"type": "string"}),
        ));
        parameters.push(query(
            "external_id",
            "Only the record with this external id.",
            json!({"type": "string"}),
        ));
    }
    parameters
}

fn name(what: Readable) -> &'static str {
    match what {
        Readable::Resource(resource) => resource.as_str(),
        Readable::GlAccounts => "gl-accounts",
    }
}

/// `GET /v1/entities/{entity_id}/{resource}`
async fn list(
    what: Readable,
    State(state): State<AppState>,
    principal: Principal,
    page: Paging<RecordCursor>,
) -> Result<Response, ApiError> {
    let (url, cursor_param) = (page.url.clone(), page.cursor_param());
    let backward = matches!(page.from, Some(PageFrom::Before(_)));
    let filter = read_filter(what, page)?;
    let page = read::list(&state.pool, principal.tenant(), what, &filter)
        .await
        .map_err(|e| match e {
            ReadError::UnknownCursor => ApiError::invalid(
                cursor_param,
                format!(
                    "{cursor_param} must be the id of a record of {}",
                    name(what)
                ),
            ),
            ReadError::Database(e) => e.into(),
        })?;
    let mut body = super::list_page(&url, backward, &page.data, page.has_more, |r| {
        r["id"].clone()
    });
    if let Some(count) = page.total_count {
        body["total_count"] = json!(count);
    }
    Ok(Json(body).into_response())
}

fn read_filter(what: Readable, page: Paging<RecordCursor>) -> Result<ReadFilter, ApiError> {
    let mut filter = ReadFilter {
        limit: page.limit,
        from: page.from,
        include_count: page.params.flag("include_count")?,
        ..ReadFilter::default()
    };
    for (param, slot) in [
        ("external_source", &mut filter.external_source),
        ("external_id", &mut filter.external_id),
    ] {
        if let Some(value) = page.params.get(param) {
            if !what.has_provenance() {
                return Err(ApiError::invalid(
                    param,
                    format!("{} have no provenance to filter on", name(what)),
                ));
            }
            *slot = Some(value.to_owned());
        }
    }
    Ok(filter)
}

/// `GET /v1/entities/{entity_id}/{resource}/{id}`
async fn fetch(
    what: Readable,
    State(state): State<AppState>,
    principal: Principal,
    RecordId(id): RecordId,
) -> Result<Response, ApiError> {
    match read::get(&state.pool, principal.tenant(), what, id).await? {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(ApiError::not_found(
            "not_found",
            format!("no {} record {id}", name(what)),
        )),
    }
}

/// `POST /v1/entities/{entity_id}/{resource}`: one record, through the same
/// canonical create handler as the bulk import.
async fn create(
    resource: Resource,
    State(state): State<AppState>,
    principal: Principal,
    params: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let strict = params.flag("strict")?;
    let body = body.map_err(body_error)?;
    let record: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    if !record.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("the body must be a JSON object: one {resource} record"),
        ));
    }
    inspect_record(&record, "")?;
    let tenant = principal.tenant();
    let actor = Actor::key(principal.key_id, context::request_id(&headers));
    let single = SingleContext {
        tenant,
        may_bypass_period_check: principal.may_bypass_period_check(),
        actor: &actor,
        strict,
    };
    let mut tx = state.pool.begin().await?;
    let id = match domain::import::create_one(&mut tx, resource, &record, single).await {
        Ok(id) => id,
        Err(HandlerError::Record(e)) => return Err(record_error(e)),
        Err(HandlerError::Database(e)) => return Err(e.into()),
    };
    tx.commit().await?;
    let mut created = read::get(&state.pool, tenant, Readable::Resource(resource), id)
        .await?
        .ok_or_else(|| ApiError::internal(&"a record just created cannot be read"))?;
    // What the record carried that was not kept, beside the record itself
    // (nothing in strict mode, where such a field was refused).
    created["ignored_fields"] = json!(ignored_in_single(resource, &record));
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// A record refused by its canonical handler: 409 when it collides with
/// what is stored, 422 when the record itself is wrong.
fn record_error(e: RecordError) -> ApiError {
    let (status, kind) = match e.kind {
        RecordErrorKind::Conflict => (StatusCode::CONFLICT, ErrorType::Conflict),
        RecordErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::ValidationError),
    };
    let mut error = ApiError::new(status, kind, e.code, e.message);
    error.param = e.param;
    error.hint = e.hint;
    error
}
