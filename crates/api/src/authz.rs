//! Authorization in one place. Every route that is not public is served
//! behind [`authorize`], given the route's [`Policy`] from its entry in the
//! route table (`routes::Route`): the key is authenticated and checked
//! against the path's entity (the [`Principal`] extractor), the key's rate
//! limit is counted, and the scopes are checked.

use std::sync::Arc;

use auth::{AuthError, Principal};
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::Resource;

use crate::error::ErrorType;
use crate::ratelimit::Decision;
use crate::{ApiError, AppState};

/// A scope a route needs: any one of these, the vendor's first (the one an
/// `insufficient_scope` error names).
pub type Need = &'static [&'static str];

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Public,
    /// Every one of these needs.
    Scopes(Vec<Need>),
    /// These needs and the write scope of the resource the path names
    /// (`{resource}`).
    ScopesAndResourceWrite(Vec<Need>),
}

impl Policy {
    /// The needs of a request, given the resource its path names. An unknown
    /// resource adds none: it is the handler's 404.
    pub fn needs(&self, resource: Option<&str>) -> Vec<Need> {
        match self {
            Policy::Public => Vec::new(),
            Policy::Scopes(needs) => needs.clone(),
            Policy::ScopesAndResourceWrite(needs) => {
                let mut needs = needs.clone();
                if let Some(resource) = resource.and_then(|r| r.parse::<Resource>().ok()) {
                    needs.push(resource.write_scopes());
                }
                needs
            }
        }
    }
}

/// The first need of `needs` the key does not meet, as the error that names
/// it.
pub fn check(principal: &Principal, needs: &[Need]) -> Result<(), AuthError> {
    match needs
        .iter()
        .find(|need| !need.iter().any(|scope| principal.has(scope)))
    {
        Some(need) => Err(AuthError::InsufficientScope(need[0])),
        None => Ok(()),
    }
}

/// What [`authorize`] is given for a route: the application and the route's
/// policy.
#[derive(Clone)]
pub struct Guard {
    state: AppState,
    policy: Arc<Policy>,
}

impl Guard {
    pub fn new(state: AppState, policy: Policy) -> Self {
        Self {
            state,
            policy: Arc::new(policy),
        }
    }
}

/// The middleware: see the module documentation.
pub async fn authorize(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Guard { state, policy } = guard;
    let (mut parts, body) = request.into_parts();
    let resource = match *policy {
        Policy::ScopesAndResourceWrite(_) => RawPathParams::from_request_parts(&mut parts, &state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "resource")
                    .map(|(_, value)| value.to_owned())
            }),
        _ => None,
    };
    let needs = policy.needs(resource.as_deref());

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
    } else if let Err(missing) = check(&principal, &needs) {
        ApiError::from(missing).into_response()
    } else {
        next.run(Request::from_parts(parts, body)).await
    };
    if let Some(decision) = decision {
        rate_limit_headers(&mut response, decision);
    }
    response
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
    use axum::http::Method;

    use super::*;
    use crate::routes;

    /// The policy of the route at `method` and `template`, if there is one.
    fn policy(method: &Method, template: &str) -> Option<Policy> {
        routes::all()
            .into_iter()
            .find(|route| route.method == method && route.path == template)
            .map(|route| route.policy)
    }

    #[test]
    fn the_routes_require_their_scopes() {
        let entity = "/v1/entities/{entity_id}";
        let cases = [
            (
                Method::POST,
                format!("{entity}/migration/{{resource}}/bulk"),
                Some("vendor-bills"),
                vec![vec!["migration:write"], vec!["purchasing:write"]],
            ),
            (
                Method::POST,
                format!("{entity}/migration/{{resource}}/bulk"),
                Some("invoices"),
                vec![vec!["migration:write"]],
            ),
            (
                Method::GET,
                format!("{entity}/migration/jobs/{{job_id}}"),
                None,
                vec![vec!["migration:read"]],
            ),
            (
                Method::GET,
                format!("{entity}/migration/jobs/{{job_id}}/errors"),
                None,
                vec![vec!["migration:read"]],
            ),
            (
                Method::POST,
                format!("{entity}/migration/jobs/{{job_id}}/retry"),
                None,
                vec![vec!["migration:write"]],
            ),
            (
                Method::GET,
                format!("{entity}/journal-entries"),
                None,
                vec![vec!["accounting:read"]],
            ),
            (
                Method::POST,
                format!("{entity}/ap-payments"),
                None,
                vec![vec!["purchasing:write", "payments:write"]],
            ),
            (
                Method::GET,
                format!("{entity}/orders/{{id}}"),
                None,
                vec![vec!["orders:read"]],
            ),
            (
                Method::GET,
                format!("{entity}/gl-accounts/{{id}}"),
                None,
                vec![vec!["accounting:read"]],
            ),
            (
                Method::GET,
                format!("{entity}/reconciliation/trial-balance"),
                None,
                vec![vec!["accounting:read", "migration:read"]],
            ),
            (
                Method::GET,
                format!("{entity}/reconciliation/counts"),
                None,
                vec![vec!["accounting:read", "migration:read"]],
            ),
            (
                Method::POST,
                format!("{entity}/webhook-endpoints"),
                None,
                vec![vec!["webhooks:manage", "migration:write"]],
            ),
            (
                Method::GET,
                format!("{entity}/webhook-endpoints"),
                None,
                vec![vec!["webhooks:manage", "migration:read"]],
            ),
            (
                Method::DELETE,
                format!("{entity}/webhook-endpoints/{{endpoint_id}}"),
                None,
                vec![vec!["webhooks:manage", "migration:write"]],
            ),
            (
                Method::GET,
                format!("{entity}/webhook-endpoints/{{endpoint_id}}/deliveries"),
                None,
                vec![vec!["webhooks:manage", "migration:read"]],
            ),
        ];
        for (method, template, resource, expected) in cases {
            let policy = policy(&method, &template)
                .unwrap_or_else(|| panic!("{method} {template} is not a route"));
            assert_ne!(policy, Policy::Public, "{method} {template}");
            let needs: Vec<Vec<&str>> = policy.needs(resource).iter().map(|n| n.to_vec()).collect();
            assert_eq!(needs, expected, "{method} {template}");
        }
    }

    #[test]
    fn only_probes_documentation_and_the_console_are_public() {
        let public: Vec<String> = routes::all()
            .into_iter()
            .filter(|route| route.policy == Policy::Public)
            .map(|route| format!("{} {}", route.method, route.path))
            .collect();
        assert_eq!(
            public,
            [
                "GET /healthz",
                "GET /readyz",
                "GET /metrics",
                "GET /openapi.json",
                "GET /docs",
                "GET /docs/redoc.standalone.js",
                "GET /console",
                "GET /console/console.js",
                "GET /console/console.css",
            ]
        );
    }

    #[test]
    fn what_is_not_in_the_table_is_not_a_route() {
        for (method, template) in [
            (Method::GET, "/v1/entities/{entity_id}/invoices"),
            (Method::DELETE, "/v1/entities/{entity_id}/orders/{id}"),
            (Method::POST, "/v1/entities/{entity_id}/orders/{id}"),
            (
                Method::GET,
                "/v1/entities/{entity_id}/webhook-endpoints/{endpoint_id}",
            ),
            (Method::POST, "/v1/entities/{entity_id}/gl-accounts"),
        ] {
            assert_eq!(policy(&method, template), None, "{method} {template}");
        }
    }
}
