//! Webhook endpoints: an entity registers URLs that are sent a signed event
//! when one of its migration jobs reaches a terminal state (the workers
//! deliver them; see `crates/worker/src/webhooks.rs`). Endpoints are per
//! entity and mode, like everything else: a test key's endpoints hear of
//! test jobs only.

use auth::Principal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use domain::PageFrom;
use domain::audit::Actor;
use domain::webhooks::{self, CreateError, EndpointUrl, EventType, MAX_ENDPOINTS, UrlError};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::authz::Policy;
use crate::extract::{DeliveryCursor, EndpointId, Paging};
use crate::openapi::{Operation, paging, reference};
use crate::request::body_error;
use crate::routes::{Doc, Route};
use crate::{ApiError, AppState, context};

pub fn routes() -> Vec<Route> {
    // The vendor's pages ask webhooks:manage; a migration key serves too,
    // since an endpoint here announces its jobs' ends.
    let write = || Policy::Scopes(vec![&["webhooks:manage", "migration:write"]]);
    let read = || Policy::Scopes(vec![&["webhooks:manage", "migration:read"]]);
    vec![
        Route::new(
            Method::POST,
            "/v1/entities/{entity_id}/webhook-endpoints",
            write(),
            Doc::Operation(
                Operation::new(
                    "webhooks",
                    "Register a webhook endpoint: each of the mode's jobs that ends is announced to it by a signed event.",
                )
                .request(reference("WebhookEndpointCreate"))
                .responds(
                    "201",
                    "The endpoint, with its signing secret (shown only here).",
                    reference("WebhookEndpointWithSecret"),
                ),
            ),
            create_endpoint,
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/webhook-endpoints",
            read(),
            Doc::Operation(
                Operation::new(
                    "webhooks",
                    "List the webhook endpoints of the key's mode (never their secrets).",
                )
                .responds(
                    "200",
                    "The endpoints.",
                    reference("WebhookEndpointList"),
                ),
            ),
            list_endpoints,
        ),
        Route::new(
            Method::DELETE,
            "/v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}",
            write(),
            Doc::Operation(
                Operation::new(
                    "webhooks",
                    "Delete a webhook endpoint: it receives nothing more, and its pending deliveries are given up.",
                )
                .responds(
                    "200",
                    "The endpoint was deleted.",
                    reference("WebhookEndpointDeleted"),
                )
                .errors(&[("404", "not_found.")]),
            ),
            delete_endpoint,
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}/deliveries",
            read(),
            Doc::Operation(
                Operation::new(
                    "webhooks",
                    "List an endpoint's deliveries, newest first: their status, attempts and last error.",
                )
                .parameters(paging())
                .responds(
                    "200",
                    "A page of deliveries.",
                    reference("WebhookDeliveryList"),
                )
                .errors(&[("404", "not_found.")]),
            ),
            list_deliveries,
        ),
    ]
}

/// A validated `POST .../webhook-endpoints` body.
#[derive(Debug)]
struct CreateRequest {
    url: EndpointUrl,
    events: Vec<EventType>,
}

impl CreateRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?;
        let Value::Object(body) = value else {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the body must be a JSON object with url and, optionally, events",
            ));
        };
        let url = match body.get("url") {
            None | Some(Value::Null) => {
                return Err(ApiError::bad_request(
                    "missing_parameter",
                    "url is required: the http or https URL events are posted to",
                )
                .param("url"));
            }
            Some(Value::String(raw)) => EndpointUrl::parse(raw).map_err(|e| match e {
                UrlError::TooLong => {
                    ApiError::bad_request("parameter_too_long", e.to_string()).param("url")
                }
                UrlError::Credentials => ApiError::invalid("url", e.to_string())
                    .hint("check the Arcus-Signature header to know a request is ours"),
                UrlError::Malformed(_) | UrlError::Scheme(_) => {
                    ApiError::invalid("url", e.to_string())
                        .hint("give a full URL such as https://example.com/webhooks/arcus")
                }
            })?,
            Some(_) => return Err(ApiError::invalid("url", "url must be a string")),
        };
        // The vendor's name is enabled_events; events, its deprecated alias,
        // is ignored when enabled_events is given.
        let key = match body.get("enabled_events") {
            None | Some(Value::Null) => "events",
            Some(_) => "enabled_events",
        };
        let events = match body.get(key) {
            None | Some(Value::Null) => EventType::ALL.to_vec(),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(ApiError::invalid(
                    key,
                    format!("{key} must name at least one event type; leave it out to receive all"),
                ));
            }
            Some(Value::Array(items)) => {
                let mut events = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    let matching =
                        item.as_str().and_then(EventType::matching).ok_or_else(|| {
                            ApiError::bad_request(
                                "invalid_parameter",
                                format!(
                                    "{at} must be *, migration_job.* or one of {}: the events this \
                                 service sends",
                                    EventType::names().join(", ")
                                ),
                            )
                            .param(at.clone())
                        })?;
                    events.extend(matching);
                }
                events
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    key,
                    format!(
                        "{key} must be an array of event types: *, migration_job.* or {}",
                        EventType::names().join(", ")
                    ),
                ));
            }
        };
        Ok(Self { url, events })
    }
}

/// `POST /v1/entities/{entity_id}/webhook-endpoints`: 201 with the endpoint
/// and its signing secret, which is shown this once.
async fn create_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let request = CreateRequest::parse(&body)?;
    let actor = Actor::key(principal.key_id, context::request_id(&headers));
    let created = webhooks::create(
        &state.pool,
        principal.tenant(),
        &request.url,
        &request.events,
        &actor,
    )
    .await
    .map_err(|e| match e {
        CreateError::TooMany => ApiError::bad_request(
            "webhook_endpoint_limit_reached",
            format!("an entity may have at most {MAX_ENDPOINTS} webhook endpoints per mode"),
        )
        .hint("delete an endpoint you no longer use, or send several event types to one"),
        CreateError::Database(e) => e.into(),
    })?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/entities/{entity_id}/webhook-endpoints`: every endpoint of the
/// key's entity and mode, without secrets.
async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
    uri: Uri,
) -> Result<Response, ApiError> {
    let endpoints = webhooks::list(&state.pool, principal.tenant()).await?;
    Ok(Json(super::list_page(
        uri.path(),
        false,
        &endpoints,
        false,
        |e| e.id,
    ))
    .into_response())
}

fn no_endpoint(id: Uuid) -> ApiError {
    ApiError::not_found("not_found", format!("no webhook endpoint {id}"))
}

/// `DELETE /v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}`
async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    EndpointId(id): EndpointId,
) -> Result<Response, ApiError> {
    let actor = Actor::key(principal.key_id, context::request_id(&headers));
    if !webhooks::delete(&state.pool, principal.tenant(), id, &actor).await? {
        return Err(no_endpoint(id));
    }
    Ok(Json(json!({"id": id, "object": "webhook_endpoint", "deleted": true})).into_response())
}

/// `GET /v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}/deliveries`:
/// the endpoint's deliveries, newest first (`limit`, `starting_after` or
/// `ending_before`).
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    EndpointId(id): EndpointId,
    page: Paging<DeliveryCursor>,
) -> Result<Response, ApiError> {
    let backward = matches!(page.from, Some(PageFrom::Before(_)));
    let url = page.url;
    let page = webhooks::deliveries(&state.pool, principal.tenant(), id, page.limit, page.from)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(Json(super::list_page(
        &url,
        backward,
        &page.deliveries,
        page.has_more,
        |d| d.id,
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (String, Option<String>) {
        let e = CreateRequest::parse(body.as_bytes()).expect_err("refused");
        (e.code.into_owned(), e.param)
    }

    #[test]
    fn events_default_to_all_and_are_checked_one_by_one() {
        let all = CreateRequest::parse(br#"{"url": "https://example.com/hook"}"#)
            .unwrap_or_else(|e| panic!("valid request refused: {}", e.message));
        assert_eq!(all.events, EventType::ALL);
        let some = CreateRequest::parse(
            br#"{"url": "https://example.com/hook", "events": ["migration_job.failed"]}"#,
        )
        .unwrap_or_else(|e| panic!("valid request refused: {}", e.message));
        assert_eq!(some.events, [EventType::JobFailed]);
        assert_eq!(
            refused(
                r#"{"url": "https://example.com", "events": ["migration_job.failed", "job.done"]}"#
            ),
            ("invalid_parameter".into(), Some("events[1]".into()))
        );
        assert_eq!(
            refused(r#"{"url": "https://example.com", "events": []}"#),
            ("invalid_parameter".into(), Some("events".into()))
        );
    }

    #[test]
    fn enabled_events_takes_wildcards_and_wins_over_events() {
        let parse = |body: &str| {
            CreateRequest::parse(body.as_bytes())
                .unwrap_or_else(|e| panic!("valid request refused: {}", e.message))
                .events
        };
        assert_eq!(
            parse(r#"{"url": "https://example.com", "enabled_events": ["*"]}"#),
            EventType::ALL
        );
        assert_eq!(
            parse(r#"{"url": "https://example.com", "enabled_events": ["migration_job.*"]}"#),
            EventType::ALL
        );
        assert_eq!(
            parse(
                r#"{"url": "https://example.com", "enabled_events": ["migration_job.partial"],
                    "events": ["order.*"]}"#
            ),
            [EventType::JobPartial]
        );
        assert_eq!(
            refused(r#"{"url": "https://example.com", "enabled_events": ["*", "order.*"]}"#),
            ("invalid_parameter".into(), Some("enabled_events[1]".into()))
        );
    }

    #[test]
    fn bad_urls_name_the_url() {
        assert_eq!(
            refused(r#"{"events": null}"#),
            ("missing_parameter".into(), Some("url".into()))
        );
        assert_eq!(
            refused(r#"{"url": "ftp://example.com"}"#),
            ("invalid_parameter".into(), Some("url".into()))
        );
        assert_eq!(
            refused(r#"{"url": 7}"#),
            ("invalid_parameter".into(), Some("url".into()))
        );
        let long = format!(r#"{{"url": "https://example.com/{}"}}"#, "a".repeat(2048));
        assert_eq!(
            refused(&long),
            ("parameter_too_long".into(), Some("url".into()))
        );
    }
}
