//! The migration endpoints: submit a bulk import (or dry-run it), get a job,
//! list jobs, page through or download a job's errors, and retry a job's
//! failed records.

use auth::Principal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::audit::Actor;
use domain::import::{ImportContext, ignored_fields, import_batch};
use domain::jobs::{self, Idempotency, JobStatus, ListError, ListFilter, NewJob, Submission};
use domain::spec::EXTERNAL_SOURCE_MAX;
use domain::{ConflictMode, PageFrom, Resource};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::authz::{self, Policy};
use crate::extract::{ErrorCursor, JobCursor, JobId, Paging, Params};
use crate::openapi::{Operation, limit, paging, query, reference, resource_names};
use crate::request::{body_error, inspect_record};
use crate::routes::{Doc, Route};
use crate::{ApiError, AppState, context};

/// Records one request may carry.
pub const MAX_RECORDS: usize = 1000;
/// Longest `Idempotency-Key`.
const IDEMPOTENCY_KEY_MAX: usize = 255;

pub fn routes() -> Vec<Route> {
    let statuses =
        json!({"type": "string", "enum": ["pending", "running", "completed", "partial", "failed"]});
    vec![
        Route::new(
            Method::POST,
            "/v1/entities/{entity_id}/migration/{resource}/bulk",
            Policy::ScopesAndResourceWrite(vec![&["migration:write"]]),
            Doc::Operation(
                Operation::new(
                    "migration",
                    "Submit up to 1,000 records as a job, or dry-run them.",
                )
                .parameters([
                    query(
                        "dry_run",
                        "true: run every rule synchronously and write nothing.",
                        json!({"type": "boolean"}),
                    ),
                    strict_parameter(),
                    json!({"name": "Idempotency-Key", "in": "header", "required": false,
                       "description": "At most 255 characters, kept 24 h: a retry with the same body replays the first response.",
                       "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX, "pattern": "\\S"}}),
                ])
                .request(reference("BulkRequest"))
                .responds("202", "The job, pending.", reference("Job"))
                .responds("200", "A dry run's result.", reference("DryRunResult"))
                .errors(&[
                    ("404", "unknown_resource."),
                    ("409", "idempotency_key_mismatch."),
                    ("413", "payload_too_large."),
                ]),
            ),
            submit_bulk,
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/migration/jobs",
            Policy::Scopes(vec![&["migration:read"]]),
            Doc::Operation(
                Operation::new("migration", "List jobs, newest first.")
                    .parameters(paging())
                    .parameters([
                        query(
                            "resource",
                            "Only jobs of this resource.",
                            json!({"type": "string", "enum": resource_names()}),
                        ),
                        query("status", "Only jobs in this status.", statuses),
                        query(
                            "created_after",
                            "Only jobs created after this time.",
                            json!({"type": "string", "format": "date-time"}),
                        ),
                    ])
                    .responds("200", "A page of jobs.", reference("JobList")),
            ),
            list_jobs,
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/migration/jobs/{job_id}",
            Policy::Scopes(vec![&["migration:read"]]),
            Doc::Operation(
                Operation::new("migration", "Get a job.")
                    .parameters([json!({"name": "If-None-Match", "in": "header", "required": false,
                        "description": "The ETag of a previous answer: 304 while the job has not changed.",
                        "schema": {"type": "string"}})])
                    .responds("200", "The job, with its ETag.", reference("Job"))
                    .responds_with("304", json!({"description": "The job has not changed since the ETag given."}))
                    .errors(&[("404", "not_found.")]),
            ),
            get_job,
        ),
        Route::new(
            Method::GET,
            "/v1/entities/{entity_id}/migration/jobs/{job_id}/errors",
            Policy::Scopes(vec![&["migration:read"]]),
            Doc::Operation(
                Operation::new(
                    "migration",
                    "Page through a job's errors, or download them all as CSV.",
                )
                .parameters([
                    limit(),
                    query(
                        "starting_after",
                        "A record index: the errors after it.",
                        json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
                    ),
                    query(
                        "ending_before",
                        "A record index: the errors before it (not with starting_after).",
                        json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
                    ),
                    query(
                        "format",
                        "csv: every error as text/csv, one row per failed record: index, the record's fields in the column convention arcusctl import reads (line_items[0].quantity), error_code, error, param, hint.",
                        json!({"type": "string", "enum": ["json", "csv"]}),
                    ),
                ])
                .responds_with(
                    "200",
                    json!({
                        "description": "A page of errors (JSON), or with format=csv the CSV file.",
                        "content": {
                            "application/json": {"schema": reference("JobErrorList")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    }),
                )
                .errors(&[("404", "not_found.")]),
            ),
            job_errors,
        ),
        // The job's resource is not in the path: the handler checks its
        // write scope once it has read the job.
        Route::new(
            Method::POST,
            "/v1/entities/{entity_id}/migration/jobs/{job_id}/retry",
            Policy::Scopes(vec![&["migration:write"]]),
            Doc::Operation(
                Operation::new(
                    "migration",
                    "Retry a finished job's failed records as a new job linked to it by retry_of; also needs the job resource's write scope. Accepts Idempotency-Key.",
                )
                .responds("202", "The new job, pending.", reference("Job"))
                .errors(&[
                    ("404", "not_found."),
                    (
                        "409",
                        "job_not_finished, nothing_to_retry or idempotency_key_mismatch.",
                    ),
                ]),
            ),
            retry_job,
        ),
    ]
}

/// A validated bulk request.
struct BulkRequest {
    records: Value,
    count: usize,
    external_source: String,
    conflict_mode: ConflictMode,
}

impl BulkRequest {
    /// Checks the request's shape. A record's own fields are the canonical
    /// handler's business (per-record errors); only what would make the whole
    /// request meaningless is refused here.
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?;
        let Value::Object(mut body) = value else {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the body must be a JSON object with records and external_source",
            ));
        };

        let records = match body.remove("records") {
            None | Some(Value::Null) => {
                return Err(ApiError::missing(
                    "records",
                    "records is required: an array of 1 to 1000 objects",
                ));
            }
            Some(Value::Array(records)) => records,
            Some(_) => {
                return Err(ApiError::invalid(
                    "records",
                    "records must be an array of objects",
                ));
            }
        };
        if records.is_empty() {
            return Err(ApiError::bad_request(
                "no_records",
                "records must hold at least one record",
            )
            .param("records"));
        }
        if records.len() > MAX_RECORDS {
            return Err(ApiError::bad_request(
                "too_many_records",
                format!(
                    "records holds {} records; at most {MAX_RECORDS} are allowed per request",
                    records.len()
                ),
            )
            .param("records")
            .hint("split the import into several requests of at most 1000 records"));
        }
        for (i, record) in records.iter().enumerate() {
            if !record.is_object() {
                return Err(ApiError::bad_request(
                    "invalid_record",
                    format!("records[{i}] must be a JSON object"),
                )
                .param(format!("records[{i}]")));
            }
            inspect_record(record, &format!("records[{i}]"))?;
        }

        let external_source = match body.get("external_source") {
            None | Some(Value::Null) => {
                return Err(ApiError::missing(
                    "external_source",
                    "external_source is required: the system the records come from (e.g. quickbooks)",
                ));
            }
            Some(Value::String(s)) if s.trim().is_empty() || s.contains('\0') => {
                return Err(ApiError::invalid(
                    "external_source",
                    "external_source must not be blank",
                ));
            }
            Some(Value::String(s)) if s.chars().count() > EXTERNAL_SOURCE_MAX => {
                return Err(ApiError::bad_request(
                    "parameter_too_long",
                    format!("external_source is at most {EXTERNAL_SOURCE_MAX} characters"),
                )
                .param("external_source"));
            }
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "external_source",
                    "external_source must be a string",
                ));
            }
        };

        let conflict_mode = match body.get("conflict_mode") {
            None | Some(Value::Null) => ConflictMode::default(),
            Some(Value::String(s)) => s.parse().map_err(|e: domain::UnknownValue| {
                ApiError::invalid("conflict_mode", e.to_string())
            })?,
            Some(_) => {
                return Err(ApiError::invalid(
                    "conflict_mode",
                    "conflict_mode must be one of skip, update, replace, error",
                ));
            }
        };

        Ok(Self {
            count: records.len(),
            records: Value::Array(records),
            external_source,
            conflict_mode,
        })
    }
}

fn parse_resource(name: &str) -> Result<Resource, ApiError> {
    name.parse().map_err(|e: domain::UnknownValue| {
        ApiError::not_found("unknown_resource", e.to_string()).param("resource")
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = |message: &str| {
        ApiError::bad_request("invalid_idempotency_key", message).param("Idempotency-Key")
    };
    let key = value
        .to_str()
        .map_err(|_| bad("Idempotency-Key must be printable ASCII"))?
        .trim();
    if key.is_empty() {
        return Err(bad("Idempotency-Key must not be empty"));
    }
    if key.len() > IDEMPOTENCY_KEY_MAX {
        return Err(bad("Idempotency-Key is at most 255 characters"));
    }
    Ok(Some(key))
}

/// The `strict` query parameter of the endpoints that write records.
pub(crate) fn strict_parameter() -> Value {
    query(
        "strict",
        "true: a field the service does not read is the record's error unknown_field (param: its path) instead of being reported in ignored_fields.",
        json!({"type": "boolean"}),
    )
}

/// `POST /v1/entities/{entity_id}/migration/{resource}/bulk`
async fn submit_bulk(
    State(state): State<AppState>,
    principal: Principal,
    Path((_entity_id, resource)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = parse_resource(&resource)?;
    let dry_run = params.flag("dry_run")?;
    let strict = params.flag("strict")?;
    let key = idempotency_key(&headers)?;
    let body = body.map_err(body_error)?;
    // Parsing and checking a thousand records takes milliseconds of CPU: off
    // the async threads, which meanwhile answer the status reads.
    let (request, ignored) = {
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            BulkRequest::parse(&body).map(|request| {
                let records = request.records.as_array().expect("parse keeps an array");
                let ignored = ignored_fields(resource, records, strict);
                (request, ignored)
            })
        })
        .await
        .map_err(|e| ApiError::internal(&e))??
    };
    let tenant = principal.tenant();

    if dry_run {
        // The same import the worker runs, on a transaction that is never
        // committed: every rule runs, nothing is written.
        let actor = Actor::key(principal.key_id, context::request_id(&headers));
        let ctx = ImportContext {
            tenant,
            resource,
            external_source: &request.external_source,
            conflict_mode: request.conflict_mode,
            actor: &actor,
            may_bypass_period_check: principal.may_bypass_period_check(),
            strict,
        };
        let records = request.records.as_array().expect("parse keeps an array");
        let mut tx = state.pool.begin().await?;
        let batch = import_batch(&mut tx, &ctx, records).await?;
        tx.rollback().await?;
        let t = batch.tally;
        return Ok(Json(json!({
            "object": "migration_dry_run_result",
            "dry_run": true,
            "resource": resource.as_str(),
            "external_source": request.external_source,
            "conflict_mode": request.conflict_mode,
            "total_records": request.count,
            "succeeded_records": t.succeeded,
            "failed_records": t.failed,
            "created_records": t.created,
            "updated_records": t.updated,
            "skipped_records": t.skipped,
            "replaced_records": t.replaced,
            "strict": strict,
            "ignored_fields": ignored,
            "errors": t.errors,
        }))
        .into_response());
    }

    let request_hash = key.map(|_| {
        let mut hasher = Sha256::new();
        hasher.update(resource.as_str().as_bytes());
        hasher.update(b"\n");
        hasher.update(&body);
        hex::encode(hasher.finalize())
    });
    let idempotency = key
        .zip(request_hash.as_deref())
        .map(|(key, request_hash)| Idempotency { key, request_hash });
    let submission = jobs::submit(
        &state.pool,
        NewJob {
            tenant,
            resource,
            external_source: &request.external_source,
            conflict_mode: request.conflict_mode,
            records: &request.records,
            record_count: i32::try_from(request.count).expect("at most 1000 records"),
            request_id: context::request_id(&headers),
            submitted_by: Some(principal.key_id),
            retry_of: None,
            may_bypass_period_check: principal.may_bypass_period_check(),
            strict,
            ignored_fields: &ignored,
        },
        idempotency,
    )
    .await?;
    Ok(submission_response(&state, resource, submission))
}

/// The response to a submission: the new job, the replay of the first
/// response to its key, or the key's misuse.
fn submission_response(state: &AppState, resource: Resource, submission: Submission) -> Response {
    match submission {
        Submission::Created(job) => {
            state.relay_notify.notify_one();
            state
                .metrics
                .jobs_accepted
                .with_label_values(&[resource.as_str()])
                .inc();
            let location = job_location(job.entity_id, job.id);
            let mut response = (StatusCode::ACCEPTED, Json(job)).into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Submission::Replayed { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            // The replay points at the job the first response created, as
            // that response did.
            let job = |key: &str| body[key].as_str().and_then(|s| s.parse::<Uuid>().ok());
            let location = job("entity_id")
                .zip(job("id"))
                .map(|(entity, id)| job_location(entity, id));
            let mut response = (status, Json(body)).into_response();
            let headers = response.headers_mut();
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            if let Some(location) = location {
                headers.insert(header::LOCATION, location);
            }
            response
        }
        Submission::KeyReused => ApiError::conflict(
            "idempotency_key_mismatch",
            "this Idempotency-Key was already used with a different request",
        )
        .param("Idempotency-Key")
        .hint("use a new key for a new request; a retry must send the same body")
        .into_response(),
    }
}

/// Where a job is read.
fn job_location(entity_id: Uuid, job_id: Uuid) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/entities/{entity_id}/migration/jobs/{job_id}"))
        .expect("a path of two UUIDs is a header value")
}

/// `GET /v1/entities/{entity_id}/migration/jobs/{job_id}`
///
/// With an `ETag`: a client polling a job sends it back in `If-None-Match`
/// and gets `304 Not Modified`, without a body, until the job changes.
async fn get_job(
    State(state): State<AppState>,
    principal: Principal,
    JobId(job_id): JobId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(job) = jobs::get(&state.pool, principal.tenant(), job_id).await? else {
        return Err(no_such_job(job_id));
    };
    let body = serde_json::to_vec(&job).map_err(|e| ApiError::internal(&e))?;
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let etag = HeaderValue::from_str(&etag).expect("hex in quotes is a header value");
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes());
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

fn no_such_job(job_id: Uuid) -> ApiError {
    ApiError::not_found("not_found", format!("no migration job {job_id}"))
}

/// `GET /v1/entities/{entity_id}/migration/jobs/{job_id}/errors`: a page of
/// the job's errors in index order, or with `format=csv` all of them as a
/// spreadsheet.
async fn job_errors(
    State(state): State<AppState>,
    principal: Principal,
    JobId(job_id): JobId,
    page: Paging<ErrorCursor>,
) -> Result<Response, ApiError> {
    let csv = page
        .params
        .read("format", "json or csv", |f| match f {
            "json" => Some(false),
            "csv" => Some(true),
            _ => None,
        })?
        .unwrap_or(false);
    if csv {
        return errors_csv(&state, &principal, job_id).await;
    }
    let backward = matches!(page.from, Some(PageFrom::Before(_)));
    let url = page.url;
    let page = jobs::errors_page(
        &state.pool,
        principal.tenant(),
        job_id,
        page.from,
        page.limit,
    )
    .await?
    .ok_or_else(|| no_such_job(job_id))?;
    Ok(Json(super::list_page(
        &url,
        backward,
        &page.errors,
        page.has_more,
        |e| e.index,
    ))
    .into_response())
}

/// Every failed record of the job as a CSV row: its index, its fields in the
/// column convention `arcusctl import` reads, and its error. A consultant
/// fixes the rows in a spreadsheet and imports the file again as it is.
async fn errors_csv(
    state: &AppState,
    principal: &Principal,
    job_id: Uuid,
) -> Result<Response, ApiError> {
    let (job, failed) = jobs::failed_records(&state.pool, principal.tenant(), job_id)
        .await?
        .ok_or_else(|| no_such_job(job_id))?;
    let rows: Vec<Vec<(String, String)>> =
        failed.iter().map(|f| tabular::flatten(&f.record)).collect();
    // The external id first, then the columns in the order the records first
    // show them; a field named like an error column would be read as one, so
    // it is left out.
    let mut columns: Vec<&str> = vec!["external_id"];
    for (column, _) in rows.iter().flatten() {
        if !tabular::RESERVED.contains(&column.as_str()) && !columns.contains(&column.as_str()) {
            columns.push(column);
        }
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = std::iter::once("index")
        .chain(columns.iter().copied())
        .chain(["error_code", "error", "param", "hint"]);
    out.write_record(header).map_err(csv_error)?;
    for (f, row) in failed.iter().zip(&rows) {
        let index = f.failure.index.to_string();
        let cells = std::iter::once(index.as_str())
            .chain(columns.iter().map(|c| {
                row.iter()
                    .find(|(name, _)| name == c)
                    .map_or("", |(_, value)| value.as_str())
            }))
            .chain([
                f.failure.code.as_str(),
                f.failure.error.as_str(),
                f.failure.param.as_deref().unwrap_or(""),
                f.failure.hint.as_deref().unwrap_or(""),
            ]);
        out.write_record(cells).map_err(csv_error)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::internal(&format!("could not write the errors CSV: {e}")))?;
    let disposition = format!(
        "attachment; filename=\"{}-{}-errors.csv\"",
        job.resource, job.id
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

fn csv_error(e: csv::Error) -> ApiError {
    ApiError::internal(&format!("could not write the errors CSV: {e}"))
}

/// `POST /v1/entities/{entity_id}/migration/jobs/{job_id}/retry`: a new job
/// of the finished job's failed records, in their order, with its source and
/// conflict mode, linked to it by `retry_of`.
async fn retry_job(
    State(state): State<AppState>,
    principal: Principal,
    JobId(job_id): JobId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let tenant = principal.tenant();
    let (job, failed) = jobs::failed_records(&state.pool, tenant, job_id)
        .await?
        .ok_or_else(|| no_such_job(job_id))?;
    let resource: Resource = job.resource.parse().expect("a stored job names a resource");
    // The route needs migration:write; writing this resource needs its own
    // scope too, as submitting it would.
    authz::check(&principal, &[resource.write_scopes()])?;
    if !job.status.is_terminal() {
        return Err(ApiError::conflict(
            "job_not_finished",
            format!(
                "job {job_id} is {}; only a finished job can be retried",
                job.status
            ),
        )
        .hint("wait until the job is completed, partial or failed"));
    }
    if failed.is_empty() {
        return Err(ApiError::conflict(
            "nothing_to_retry",
            format!("job {job_id} has no failed records"),
        ));
    }
    let count = i32::try_from(failed.len()).expect("a job holds at most 1000 records");
    let records: Vec<Value> = failed.into_iter().map(|f| f.record).collect();
    let ignored = ignored_fields(resource, &records, job.strict);
    let records = Value::Array(records);
    let request_hash = {
        let mut hasher = Sha256::new();
        hasher.update(b"retry\n");
        hasher.update(job_id.as_bytes());
        hex::encode(hasher.finalize())
    };
    let submission = jobs::submit(
        &state.pool,
        NewJob {
            tenant,
            resource,
            external_source: &job.external_source,
            conflict_mode: job.conflict_mode,
            records: &records,
            record_count: count,
            request_id: context::request_id(&headers),
            submitted_by: Some(principal.key_id),
            retry_of: Some(job_id),
            may_bypass_period_check: principal.may_bypass_period_check(),
            strict: job.strict,
            ignored_fields: &ignored,
        },
        key.map(|key| Idempotency {
            key,
            request_hash: &request_hash,
        }),
    )
    .await?;
    Ok(submission_response(&state, resource, submission))
}

/// `GET /v1/entities/{entity_id}/migration/jobs`
async fn list_jobs(
    State(state): State<AppState>,
    principal: Principal,
    page: Paging<JobCursor>,
) -> Result<Response, ApiError> {
    let (url, cursor_param) = (page.url.clone(), page.cursor_param());
    let backward = matches!(page.from, Some(PageFrom::Before(_)));
    let filter = list_filter(page)?;
    let page = jobs::list(&state.pool, principal.tenant(), &filter)
        .await
        .map_err(|e| match e {
            ListError::UnknownCursor => ApiError::invalid(
                cursor_param,
                format!("{cursor_param} must be the id of one of this entity's jobs"),
            ),
            ListError::Database(e) => e.into(),
        })?;
    Ok(Json(super::list_page(
        &url,
        backward,
        &page.jobs,
        page.has_more,
        |j| j.id,
    ))
    .into_response())
}

fn list_filter(page: Paging<JobCursor>) -> Result<ListFilter, ApiError> {
    let params = &page.params;
    Ok(ListFilter {
        resource: params.parsed::<Resource>("resource")?,
        status: params.parsed::<JobStatus>("status")?,
        created_after: params.read("created_after", "an RFC 3339 timestamp", |t| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })?,
        limit: page.limit,
        from: page.from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_conflict_mode_skips() {
        let r = BulkRequest::parse(br#"{"records": [{}], "external_source": "shopify"}"#)
            .unwrap_or_else(|e| panic!("valid request refused: {}", e.message));
        assert_eq!(r.conflict_mode, ConflictMode::Skip);
        assert_eq!(r.count, 1);
    }
}
