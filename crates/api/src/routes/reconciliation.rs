//! Reconciliation, the user's proof that a migration is complete: how many
//! records of each resource came from each source, and the trial balance.

use auth::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use domain::Resource;
use serde_json::json;

use crate::authz::Policy;
use crate::extract::Params;
use crate::openapi::{Operation, query, reference};
use crate::routes::{Doc, Route};
use crate::{ApiError, AppState};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/reconciliation/counts",
            Policy::Scopes(vec![&["accounting:read", "migration:read"]]),
            Doc::Operation(
                Operation::new("reconciliation", "Records per resource and source.").responds(
                    "200",
                    "The counts.",
                    reference("ReconciliationCounts"),
                ),
            ),
            counts,
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/reconciliation/trial-balance",
            Policy::Scopes(vec![&["accounting:read", "migration:read"]]),
            Doc::Operation(
                Operation::new("reconciliation", "The trial balance.")
                    .parameters([
                        query(
                            "as_of_date",
                            "Postings on or before this date; default today.",
                            json!({"type": "string", "format": "date"}),
                        ),
                        query(
                            "external_source",
                            "Only postings of records from this source.",
                            json!({"type": "string"}),
                        ),
                    ])
                    .responds("200", "The trial balance.", reference("TrialBalance")),
            ),
            trial_balance,
        ),
    ]
}

/// `GET .../reconciliation/counts`: records per resource and source.
async fn counts(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let rows = domain::ledger::counts(&state.pool, principal.tenant()).await?;
    let mut totals = serde_json::Map::new();
    for resource in Resource::ALL {
        let total: i64 = rows
            .iter()
            .filter(|r| r.resource == resource.as_str())
            .map(|r| r.count)
            .sum();
        totals.insert(resource.as_str().to_owned(), json!(total));
    }
    Ok(Json(json!({
        "object": "reconciliation_counts",
        "data": rows,
        "totals": totals,
    }))
    .into_response())
}

/// `GET .../reconciliation/trial-balance?as_of_date=&external_source=`
async fn trial_balance(
    State(state): State<AppState>,
    principal: Principal,
    params: Params,
) -> Result<Response, ApiError> {
    let as_of = params
        .read("as_of_date", "a date YYYY-MM-DD", |raw| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
        })?
        .unwrap_or_else(|| Utc::now().date_naive());
    let source = params.get("external_source");
    let balance =
        domain::ledger::trial_balance(&state.pool, principal.tenant(), as_of, source).await?;
    Ok(Json(json!({
        "object": "trial_balance",
        "entity_id": principal.tenant().entity_id,
        "as_of_date": as_of,
        "external_source": source,
        "rows": balance.rows,
        "totals": balance.totals,
        "accounts": balance.accounts,
        "total_debits": balance.total_debits,
        "total_credits": balance.total_credits,
        "in_balance": balance.in_balance,
    }))
    .into_response())
}
