//! Authorization in one place. Every matched route passes through
//! [`authorize`] before its handler: the route's policy (public, or the scopes
//! it needs) is looked up by its path template, the key is authenticated and
//! checked against the path's entity (the [`Principal`] extractor), the key's
//! rate limit is counted, and the scopes are checked. A route missing from
//! [`policy`] is refused with a 500, so a new route cannot be reached until it
//! is given a policy.

use auth::{AuthError, Principal};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::Resource;

use crate::error::{ErrorType, generic};
use crate::ratelimit::Decision;
use crate::{ApiError, AppState};

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Public,
    Scopes(Vec<&'static str>),
}

/// The policy of a route, by its method and path template; `None` when the
/// route has none (a programming error) or the method is not served there.
pub fn policy(method: &Method, template: &str, resource: Option<&str>) -> Option<Policy> {
    use Policy::{Public, Scopes};
    if matches!(
        template,
        "/healthz"
            | "/readyz"
            | "/metrics"
            | "/openapi.json"
            | "/docs"
            | "/docs/redoc.standalone.js"
            | "/console"
            | "/console/console.js"
            | "/console/console.css"
    ) {
        return (method == Method::GET).then_some(Public);
    }
    let rest = template.strip_prefix("/v1/entities/{entity_id}/")?;
    let get = method == Method::GET;
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    match rest {
        "migration/{resource}/bulk" if post => {
            let mut scopes = vec!["migration:write"];
            // An unknown resource is the handler's 404; it needs no more.
            if let Some(resource) = resource.and_then(|r| r.parse::<Resource>().ok()) {
                scopes.push(resource.write_scope());
            }
            Some(Scopes(scopes))
        }
        "migration/jobs"
        | "migration/jobs/{job_id}"
        | "migration/jobs/{job_id}/errors"
        | "reconciliation/counts"
            if get =>
        {
            Some(Scopes(vec!["migration:read"]))
        }
        // The job's resource is not in the path: the handler checks its
        // write scope once it has read the job.
        "migration/jobs/{job_id}/retry" if post => Some(Scopes(vec!["migration:write"])),
        // Registering an endpoint is a migration setting: it says where the
        // jobs' ends are announced.
        "webhook-endpoints" if post => Some(Scopes(vec!["migration:write"])),
        "webhook-endpoints/{endpoint_id}" if delete => Some(Scopes(vec!["migration:write"])),
        "webhook-endpoints" | "webhook-endpoints/{endpoint_id}/deliveries" if get => {
            Some(Scopes(vec!["migration:read"]))
        }
        "reconciliation/trial-balance" | "gl-accounts" | "gl-accounts/{id}" if get => {
            Some(Scopes(vec!["accounting:read"]))
        }
        _ => {
            let (name, item) = match rest.strip_suffix("/{id}") {
                Some(name) => (name, true),
                None => (rest, false),
            };
            let resource: Resource = name.parse().ok()?;
            match (get, post, item) {
                (true, _, _) => Some(Scopes(vec![resource.read_scope()])),
                (_, true, false) => Some(Scopes(vec![resource.write_scope()])),
                _ => None,
            }
        }
    }
}

/// The middleware: see the module documentation.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(template) = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        // Only matched routes get here.
        return next.run(Request::from_parts(parts, body)).await;
    };
    let resource = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "resource")
                .map(|(_, value)| value.to_owned())
        });
    let scopes = match policy(&parts.method, &template, resource.as_deref()) {
        Some(Policy::Public) => return next.run(Request::from_parts(parts, body)).await,
        Some(Policy::Scopes(scopes)) => scopes,
        None if is_known(&template) => {
            return generic(StatusCode::METHOD_NOT_ALLOWED).into_response();
        }
        None => {
            return ApiError::internal(&format!("route {template} has no authorization policy"))
                .into_response();
        }
    };

    let principal = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(principal) => principal,
        Err(e) => return e.into_response(),
    };
    let decision = state
        .rate_limiter
        .as_ref()
        .map(|limiter| limiter.check(principal.key_id, principal.tier));
    let mut response = if let Some(decision) = decision.filter(|d| !d.allowed) {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimit,
            "rate_limit_exceeded",
            format!(
                "this key made too many requests; retry in {} s",
                decision.retry_after
            ),
        );
        error.hint = Some(format!(
            "this key may make {} requests a minute here; spread them out",
            decision.limit
        ));
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(decision.retry_after));
        response
    } else if let Some(missing) = scopes.iter().find(|s| !principal.has(s)) {
        ApiError::from(AuthError::InsufficientScope(missing)).into_response()
    } else {
        next.run(Request::from_parts(parts, body)).await
    };
    if let Some(decision) = decision {
        rate_limit_headers(&mut response, decision);
    }
    response
}

/// Whether some method is served at this template (so another is a 405).
fn is_known(template: &str) -> bool {
    [Method::GET, Method::POST, Method::DELETE]
        .iter()
        .any(|m| policy(m, template, None).is_some())
}

fn rate_limit_headers(response: &mut Response, decision: Decision) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", u64::from(decision.limit)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", decision.reset),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_policy() {
        let entity = "/v1/entities/{entity_id}";
        let cases = [
            (
                Method::POST,
                format!("{entity}/migration/{{resource}}/bulk"),
                Some("vendor-bills"),
                Policy::Scopes(vec!["migration:write", "purchasing:write"]),
            ),
            (
                Method::GET,
                format!("{entity}/migration/jobs/{{job_id}}"),
                None,
                Policy::Scopes(vec!["migration:read"]),
            ),
            (
                Method::GET,
                format!("{entity}/migration/jobs/{{job_id}}/errors"),
                None,
                Policy::Scopes(vec!["migration:read"]),
            ),
            (
                Method::POST,
                format!("{entity}/migration/jobs/{{job_id}}/retry"),
                None,
                Policy::Scopes(vec!["migration:write"]),
            ),
            (
                Method::GET,
                format!("{entity}/journal-entries"),
                None,
                Policy::Scopes(vec!["accounting:read"]),
            ),
            (
                Method::POST,
                format!("{entity}/ap-payments"),
                None,
                Policy::Scopes(vec!["payments:write"]),
            ),
            (
                Method::GET,
                format!("{entity}/orders/{{id}}"),
                None,
                Policy::Scopes(vec!["orders:read"]),
            ),
            (
                Method::GET,
                format!("{entity}/reconciliation/trial-balance"),
                None,
                Policy::Scopes(vec!["accounting:read"]),
            ),
            (
                Method::POST,
                format!("{entity}/webhook-endpoints"),
                None,
                Policy::Scopes(vec!["migration:write"]),
            ),
            (
                Method::GET,
                format!("{entity}/webhook-endpoints"),
                None,
                Policy::Scopes(vec!["migration:read"]),
            ),
            (
                Method::DELETE,
                format!("{entity}/webhook-endpoints/{{endpoint_id}}"),
                None,
                Policy::Scopes(vec!["migration:write"]),
            ),
            (
                Method::GET,
                format!("{entity}/webhook-endpoints/{{endpoint_id}}/deliveries"),
                None,
                Policy::Scopes(vec!["migration:read"]),
            ),
            (Method::GET, "/readyz".to_owned(), None, Policy::Public),
            (Method::GET, "/console".to_owned(), None, Policy::Public),
            (
                Method::GET,
                "/console/console.js".to_owned(),
                None,
                Policy::Public,
            ),
        ];
        for (method, template, resource, expected) in cases {
            assert_eq!(
                policy(&method, &template, resource),
                Some(expected),
                "{method} {template}"
            );
        }
    }

    #[test]
    fn routes_without_a_policy_are_refused() {
        assert_eq!(
            policy(&Method::GET, "/v1/entities/{entity_id}/invoices", None),
            None
        );
        assert_eq!(
            policy(
                &Method::DELETE,
                "/v1/entities/{entity_id}/orders/{id}",
                None
            ),
            None
        );
        assert_eq!(
            policy(&Method::POST, "/v1/entities/{entity_id}/orders/{id}", None),
            None
        );
        assert_eq!(
            policy(
                &Method::GET,
                "/v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}",
                None
            ),
            None
        );
        assert!(is_known("/v1/entities/{entity_id}/orders/{id}"));
        assert!(is_known(
            "/v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}"
        ));
        assert!(!is_known("/v1/admin"));
    }
}
