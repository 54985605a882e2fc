//! The OpenAPI 3.1 document of the API. Its paths are the route tables the
//! router and the authorization layer read (`routes::all`: each route's
//! template, policy and [`Operation`]); its record schemas are the resources'
//! field declarations (`domain::spec`). It is served at
//! `/openapi.json` and committed as `openapi.json`; a test fails when the two
//! differ, and `cargo xtask deploy-check` validates it against the OpenAPI
//! 3.1 schema. `/docs` renders it with Redoc, served by the API itself.

use domain::Resource;
use domain::read::Readable;
use domain::spec::{self, Field, Kind};
use domain::view::{Form, Shown, Shows};
use domain::webhooks;
use serde_json::{Map, Value, json};

use crate::authz::Policy;
use crate::routes::{self, Doc};

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn nullable_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

fn money(description: &str) -> Value {
    json!({"type": "number", "description": format!("{description} Exact decimal, at most 4 decimal places.")})
}

fn date(description: &str) -> Value {
    json!({"type": "string", "format": "date", "description": description})
}

fn uuid(description: &str) -> Value {
    json!({"type": "string", "format": "uuid", "description": description})
}

fn timestamp(description: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": description})
}

fn one_of(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

pub(crate) fn reference(schema: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{schema}")})
}

fn array(items: Value, description: &str) -> Value {
    json!({"type": "array", "items": items, "description": description})
}

fn object(required: &[&str], properties: Vec<(&str, Value)>) -> Value {
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({"type": "object", "required": required, "properties": properties})
}

/// The schema of a value of `kind`, with its limits.
fn kind_schema(kind: Kind) -> Value {
    // Money is an exact decimal of a numeric(19, 4) column.
    let decimal = |bound: &str| json!({"type": "number", bound: 0, "exclusiveMaximum": 1e15, "multipleOf": 0.0001});
    match kind {
        Kind::Text { max } => json!({"type": "string", "maxLength": max, "pattern": "\\S"}),
        Kind::Email { max } => {
            json!({"type": "string", "maxLength": max, "pattern": "^\\S*@\\S*$"})
        }
        Kind::Money => decimal("minimum"),
        Kind::Positive => decimal("exclusiveMinimum"),
        Kind::Percent => {
            json!({"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.0001})
        }
        Kind::Count => json!({"type": "integer", "minimum": 1, "maximum": i32::MAX}),
        Kind::Date => json!({"type": "string", "format": "date"}),
        Kind::DateOrTime => {
            json!({"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]})
        }
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Enum(names) => json!({"type": "string", "enum": names}),
        Kind::Texts { items, max } => json!({
            "type": "array",
            "maxItems": items,
            "items": {"type": "string", "maxLength": max},
        }),
        Kind::Items { min, max, of } => {
            json!({"type": "array", "minItems": min, "maxItems": max, "items": fields_schema(of)})
        }
        Kind::Object { of } => fields_schema(of),
        Kind::Reference | Kind::GlAccount => unreachable!("a pair of properties"),
    }
}

/// `schema`, or null: an optional field's absence, or a read's null.
fn nullable(mut schema: Value) -> Value {
    if let Some(kind) = schema["type"].as_str() {
        schema["type"] = json!([kind, "null"]);
    }
    if let Some(names) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        names.push(Value::Null);
    }
    schema
}

fn described(mut schema: Value, about: &str) -> Value {
    if !about.is_empty() {
        schema["description"] = json!(about);
    }
    schema
}

/// A name and its aliases, as prose: `gl_account_id (or account_id)`.
fn with_aliases(keys: &[String]) -> String {
    match keys {
        [name, aliases @ ..] if !aliases.is_empty() => {
            format!("{name} (or {})", aliases.join(", "))
        }
        _ => keys.join(""),
    }
}

/// The object schema of the fields a record (or an item of one) declares:
/// built from the declarations the parser reads them by (`domain::spec`).
fn fields_schema(fields: &[Field]) -> Value {
    let mut required = Vec::new();
    let mut properties = Map::new();
    let mut rules = Vec::new();
    for field in fields {
        // The keys a name may be given by: itself, then its aliases.
        let keys = |name: &str| -> Vec<String> {
            std::iter::once(name.to_owned())
                .chain(
                    field
                        .aliases
                        .iter()
                        .filter(|(_, target)| *target == name)
                        .map(|(alias, _)| (*alias).to_owned()),
                )
                .collect()
        };
        for (alias, name) in field.aliases {
            rules.push(json!({"not": {"required": [alias, name]}}));
        }
        let pair = match field.kind {
            Kind::Reference => Some((
                kind_schema(Kind::Text {
                    max: spec::EXTERNAL_ID_MAX,
                }),
                "its external_id from the same external_source",
            )),
            Kind::GlAccount => Some((
                kind_schema(Kind::Text {
                    max: spec::GL_NUMBER_MAX,
                }),
                "its account number (e.g. 6010)",
            )),
            _ => None,
        };
        match pair {
            Some((other, by_other)) => {
                let [id, other_name] =
                    <[String; 2]>::try_from(field.names()).expect("a reference has two names");
                let (ids, others) = (keys(&id), keys(&other_name));
                let how_many = if field.required {
                    "exactly one"
                } else {
                    "at most one"
                };
                let about = format!(
                    "{} By id or by {by_other}: {how_many} of {} and {}.",
                    field.about,
                    with_aliases(&ids),
                    with_aliases(&others),
                );
                let about = about.trim_start();
                // Never both; one when required.
                for by_id in &ids {
                    for by_other in &others {
                        rules.push(json!({"not": {"required": [by_id, by_other]}}));
                    }
                }
                if field.required {
                    let any: Vec<Value> = ids
                        .iter()
                        .chain(&others)
                        .map(|key| json!({"required": [key]}))
                        .collect();
                    rules.push(json!({"anyOf": any}));
                }
                for key in ids {
                    properties.insert(
                        key,
                        described(json!({"type": "string", "format": "uuid"}), about),
                    );
                }
                for key in others {
                    properties.insert(key, described(other.clone(), about));
                }
            }
            None => {
                let names = keys(field.name);
                let schema = kind_schema(field.kind);
                let schema = if !field.required {
                    nullable(schema)
                } else if names.len() == 1 {
                    required.push(field.name);
                    schema
                } else {
                    let any: Vec<Value> =
                        names.iter().map(|key| json!({"required": [key]})).collect();
                    rules.push(json!({"anyOf": any}));
                    schema
                };
                for key in names {
                    let about = if key == field.name {
                        field.about.to_owned()
                    } else {
                        format!("The same field as {}: give one of the two.", field.name)
                    };
                    properties.insert(key, described(schema.clone(), &about));
                }
            }
        }
    }
    let mut schema = json!({"type": "object", "required": required, "properties": properties});
    if !rules.is_empty() {
        schema["allOf"] = json!(rules);
    }
    schema
}

/// The canonical create payload of a resource (what a bulk record holds,
/// less `external_id`).
fn create_payload(resource: Resource) -> Value {
    fields_schema(domain::import::fields(resource))
}

/// The body of a one-record create: the payload, with provenance optional.
pub(crate) fn single_create_payload(resource: Resource) -> Value {
    let mut payload = create_payload(resource);
    payload["properties"]["external_source"] = described(
        nullable(kind_schema(Kind::Text {
            max: spec::EXTERNAL_SOURCE_MAX,
        })),
        "With external_id: the record's provenance, and the source its references by external id resolve in.",
    );
    payload["properties"]["external_id"] = described(
        nullable(kind_schema(Kind::Text {
            max: spec::EXTERNAL_ID_MAX,
        })),
        "With external_source: the record's id in the source system.",
    );
    payload
}

/// The object a read shows, built from the view the read's SQL is built from
/// (`domain::view`): every property is always present, null only where the
/// view says it may be.
fn view_schema(properties: &[Shown]) -> Value {
    let mut schemas = Map::new();
    for shown in properties {
        let about = match shown.shows {
            Shows::Sql(_, Form::Decimal) => {
                format!("{} Exact decimal, at most 4 decimal places.", shown.about)
            }
            _ => shown.about.to_owned(),
        };
        let schema = match shown.shows {
            Shows::Sql(_, form) => form_schema(form),
            Shows::Const(value) => json!({"type": "string", "enum": [value]}),
            Shows::Items(items) => json!({"type": "array", "items": view_schema(items.of)}),
        };
        let schema = if shown.nullable {
            nullable(schema)
        } else {
            schema
        };
        schemas.insert(shown.name.to_owned(), described(schema, about.trim_start()));
    }
    let required: Vec<&str> = properties.iter().map(|shown| shown.name).collect();
    json!({"type": "object", "required": required, "properties": schemas})
}

/// The schema of a value a read shows in `form`.
fn form_schema(form: Form) -> Value {
    match form {
        Form::Uuid => json!({"type": "string", "format": "uuid"}),
        Form::Text => json!({"type": "string"}),
        Form::Decimal => json!({"type": "number"}),
        Form::Integer => json!({"type": "integer"}),
        Form::Date => json!({"type": "string", "format": "date"}),
        Form::Timestamp => json!({"type": "string", "format": "date-time"}),
        Form::Bool => json!({"type": "boolean"}),
        Form::Enum(names) => json!({"type": "string", "enum": names}),
        Form::Texts => json!({"type": "array", "items": {"type": "string"}}),
    }
}

/// The object `what` is read back as.
fn read_object(what: Readable) -> Value {
    view_schema(&what.view().properties())
}

/// A schema name for a resource (`JournalEntry`).
pub(crate) fn schema_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Accounts => "Account",
        Resource::Products => "Product",
        Resource::Orders => "Order",
        Resource::JournalEntries => "JournalEntry",
        Resource::VendorBills => "VendorBill",
        Resource::ApPayments => "ApPayment",
    }
}

fn list_of(item: &str) -> Value {
    object(
        &["object", "data", "has_more", "url", "next_cursor"],
        vec![
            ("object", one_of(&["list"], "")),
            ("data", array(reference(item), "Newest first.")),
            (
                "has_more",
                json!({"type": "boolean", "description": "More items in the direction of the page: after it, or with ending_before, before it."}),
            ),
            ("url", string("The list's path.")),
            (
                "next_cursor",
                json!({"type": ["string", "null"], "format": "uuid", "description": "Pass as starting_after for the next page (as ending_before, for the page before a page read with ending_before)."}),
            ),
            (
                "total_count",
                json!({"type": "integer", "description": "With include_count=true only."}),
            ),
        ],
    )
}

fn schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    let job_error = object(
        &["index", "error", "code"],
        vec![
            (
                "index",
                json!({"type": "integer", "description": "Position in the submitted records array."}),
            ),
            (
                "external_id",
                string("The record's external_id; absent when it had none."),
            ),
            ("error", string("What went wrong, for people.")),
            (
                "code",
                string(
                    "Stable machine code (missing_required_field, duplicate_sku, reference_not_found, gl_imbalance, ...).",
                ),
            ),
            (
                "param",
                string("The offending field's path inside the record (lines[1].credit_amount)."),
            ),
            (
                "hint",
                string("How to fix it, where the message does not say."),
            ),
        ],
    );
    let counts = ["total_records", "succeeded_records", "failed_records"];
    let job = object(
        &[
            "id",
            "object",
            "entity_id",
            "resource",
            "status",
            "dry_run",
            "conflict_mode",
            "external_source",
            "total_records",
            "processed_records",
            "succeeded_records",
            "failed_records",
            "strict",
            "ignored_fields",
            "errors",
            "started_at",
            "completed_at",
            "created_at",
        ],
        vec![
            ("id", uuid("")),
            ("object", one_of(&["migration_job"], "")),
            ("entity_id", uuid("")),
            ("resource", one_of(&resource_names(), "")),
            (
                "status",
                one_of(
                    &["pending", "running", "completed", "partial", "failed"],
                    "completed: every record succeeded; partial: some failed; failed: none succeeded, or the batch was aborted.",
                ),
            ),
            ("dry_run", json!({"type": "boolean"})),
            (
                "conflict_mode",
                one_of(&["skip", "update", "replace", "error"], ""),
            ),
            ("external_source", string("")),
            ("total_records", json!({"type": "integer"})),
            (
                "processed_records",
                json!({"type": "integer", "description": "Always succeeded_records + failed_records."}),
            ),
            ("succeeded_records", json!({"type": "integer"})),
            ("failed_records", json!({"type": "integer"})),
            ("strict", strict()),
            ("ignored_fields", ignored_fields()),
            (
                "errors",
                array(
                    reference("JobError"),
                    "One per failed record, in index order.",
                ),
            ),
            (
                "retry_of",
                json!({"type": ["string", "null"], "format": "uuid", "description": "The job whose failed records this job retries (POST .../retry)."}),
            ),
            (
                "started_at",
                json!({"type": ["string", "null"], "format": "date-time"}),
            ),
            (
                "completed_at",
                json!({"type": ["string", "null"], "format": "date-time"}),
            ),
            ("created_at", timestamp("")),
        ],
    );
    let mut dry_run_properties = vec![
        ("object", one_of(&["migration_dry_run_result"], "")),
        ("dry_run", json!({"type": "boolean", "const": true})),
        ("resource", one_of(&resource_names(), "")),
        ("external_source", string("")),
        (
            "conflict_mode",
            one_of(&["skip", "update", "replace", "error"], ""),
        ),
    ];
    for name in counts.iter().chain(&[
        "created_records",
        "updated_records",
        "skipped_records",
        "replaced_records",
    ]) {
        dry_run_properties.push((name, json!({"type": "integer"})));
    }
    dry_run_properties.push(("strict", strict()));
    dry_run_properties.push(("ignored_fields", ignored_fields()));
    dry_run_properties.push(("errors", array(reference("JobError"), "")));
    let mut records = Map::new();
    for resource in Resource::ALL {
        let mut payload = create_payload(resource);
        payload["properties"]["external_id"] = described(
            kind_schema(Kind::Text {
                max: spec::EXTERNAL_ID_MAX,
            }),
            "Required in a bulk record: the record's id in the source system. A record without it fails on its own (missing_external_id).",
        );
        records.insert(
            resource.as_str().to_owned(),
            json!({"$ref": format!("#/components/schemas/{}Create", schema_name(resource))}),
        );
        schemas.insert(format!("{}Create", schema_name(resource)), payload);
        schemas.insert(
            schema_name(resource).to_owned(),
            read_object(Readable::Resource(resource)),
        );
        schemas.insert(
            format!("{}List", schema_name(resource)),
            list_of(schema_name(resource)),
        );
    }
    let entries = [
        (
            "Error",
            object(
                &["error", "code", "type", "hint", "param", "request_id"],
                vec![
                    (
                        "error",
                        string(
                            "The machine-readable error key: branch on it (not_found, insufficient_scope, ...).",
                        ),
                    ),
                    ("code", string("The same key as error.")),
                    (
                        "type",
                        one_of(
                            &[
                                "validation_error",
                                "permission_error",
                                "not_found",
                                "conflict",
                                "rate_limit",
                                "internal",
                            ],
                            "",
                        ),
                    ),
                    (
                        "param",
                        nullable_string("The offending parameter or field; null when none."),
                    ),
                    (
                        "hint",
                        string(
                            "One sentence for people: what went wrong and, where it does not say, how to fix it.",
                        ),
                    ),
                    (
                        "required",
                        string("The scope the key lacks (insufficient_scope)."),
                    ),
                    (
                        "request_id",
                        string("The request's id, also in the X-Request-Id header."),
                    ),
                ],
            ),
        ),
        ("JobError", job_error),
        (
            "IgnoredField",
            object(
                &["field", "records"],
                vec![
                    (
                        "field",
                        string("Its path, items' indexes left out: line_items[].variant_id."),
                    ),
                    (
                        "records",
                        json!({"type": "integer", "minimum": 1, "description": "How many records carried it."}),
                    ),
                ],
            ),
        ),
        ("Job", job),
        ("JobList", list_of("Job")),
        (
            "JobErrorList",
            object(
                &["object", "data", "has_more", "url", "next_cursor"],
                vec![
                    ("object", one_of(&["list"], "")),
                    ("data", array(reference("JobError"), "In index order.")),
                    ("has_more", json!({"type": "boolean"})),
                    ("url", string("The list's path.")),
                    (
                        "next_cursor",
                        json!({"type": ["integer", "null"], "description": "Pass as starting_after for the next page (as ending_before, for the page before a page read with ending_before)."}),
                    ),
                ],
            ),
        ),
        (
            "DryRunResult",
            object(
                &[
                    "object",
                    "dry_run",
                    "total_records",
                    "succeeded_records",
                    "failed_records",
                    "strict",
                    "ignored_fields",
                    "errors",
                ],
                dry_run_properties,
            ),
        ),
        (
            "BulkRequest",
            object(
                &["records", "external_source"],
                vec![
                    (
                        "records",
                        json!({"type": "array", "minItems": 1, "maxItems": 1000,
                    "items": {"type": "object", "description": "The resource's create payload plus external_id; see the <Resource>Create schemas.",
                              "x-payload-by-resource": records}}),
                    ),
                    (
                        "external_source",
                        described(
                            kind_schema(Kind::Text {
                                max: spec::EXTERNAL_SOURCE_MAX,
                            }),
                            "The system the records come from (quickbooks, shopify, ...).",
                        ),
                    ),
                    (
                        "conflict_mode",
                        nullable(one_of(
                            &["skip", "update", "replace", "error"],
                            "What happens to a record whose (external_source, external_id) exists. Default skip.",
                        )),
                    ),
                ],
            ),
        ),
        ("GlAccount", read_object(Readable::GlAccounts)),
        ("GlAccountList", list_of("GlAccount")),
        (
            "ReconciliationCounts",
            object(
                &["object", "data", "totals"],
                vec![
                    ("object", one_of(&["reconciliation_counts"], "")),
                    (
                        "data",
                        array(
                            object(
                                &["resource", "count"],
                                vec![
                                    ("resource", one_of(&resource_names(), "")),
                                    ("external_source", nullable_string("")),
                                    ("count", json!({"type": "integer"})),
                                ],
                            ),
                            "Records per resource and source.",
                        ),
                    ),
                    (
                        "totals",
                        json!({"type": "object", "additionalProperties": {"type": "integer"}, "description": "Records per resource."}),
                    ),
                ],
            ),
        ),
        (
            "TrialBalance",
            object(
                &[
                    "object",
                    "entity_id",
                    "as_of_date",
                    "external_source",
                    "rows",
                    "totals",
                    "accounts",
                    "total_debits",
                    "total_credits",
                    "in_balance",
                ],
                vec![
                    ("object", one_of(&["trial_balance"], "")),
                    ("entity_id", uuid("")),
                    ("as_of_date", date("")),
                    ("external_source", nullable_string("")),
                    (
                        "rows",
                        array(
                            object(
                                &[
                                    "account_id",
                                    "account_number",
                                    "account_name",
                                    "account_type",
                                    "debit_total",
                                    "credit_total",
                                    "balance",
                                ],
                                vec![
                                    ("account_id", uuid("")),
                                    ("account_number", string("")),
                                    ("account_name", string("")),
                                    ("account_type", string("")),
                                    ("debit_total", money("")),
                                    ("credit_total", money("")),
                                    ("balance", money("debit_total less credit_total.")),
                                ],
                            ),
                            "The vendor's reconciliation guide's shape: accounts with postings on or before as_of_date, by account number.",
                        ),
                    ),
                    (
                        "totals",
                        object(
                            &["debit_total", "credit_total", "balance"],
                            vec![
                                ("debit_total", money("")),
                                ("credit_total", money("")),
                                (
                                    "balance",
                                    money(
                                        "debit_total less credit_total: 0 when the books balance.",
                                    ),
                                ),
                            ],
                        ),
                    ),
                    (
                        "accounts",
                        array(
                            object(
                                &[],
                                vec![
                                    ("gl_account_id", uuid("")),
                                    ("account_number", string("")),
                                    ("name", string("")),
                                    ("account_type", string("")),
                                    ("normal_balance", string("")),
                                    ("debits", money("")),
                                    ("credits", money("")),
                                    ("balance", money("In the account's normal direction.")),
                                ],
                            ),
                            "The same accounts in this service's first shape (kept for its clients; rows is the vendor's).",
                        ),
                    ),
                    ("total_debits", money("As totals.debit_total.")),
                    ("total_credits", money("As totals.credit_total.")),
                    ("in_balance", json!({"type": "boolean"})),
                ],
            ),
        ),
        (
            "Readiness",
            object(
                &["status", "checks"],
                vec![
                    ("status", one_of(&["ready", "unavailable"], "")),
                    (
                        "checks",
                        json!({"type": "object", "additionalProperties": {"type": "boolean"}}),
                    ),
                ],
            ),
        ),
    ];
    for (name, schema) in entries {
        schemas.insert(name.to_owned(), schema);
    }
    webhook_schemas(&mut schemas);
    schemas
}

const EVENT_TYPES: [&str; 3] = [
    "migration_job.completed",
    "migration_job.partial",
    "migration_job.failed",
];

/// A job's `strict`, as submitted.
fn strict() -> Value {
    json!({"type": "boolean", "description": "Submitted with strict=true: a field the service does not read failed its record (unknown_field)."})
}

/// What records carried that was not kept.
fn ignored_fields() -> Value {
    array(
        reference("IgnoredField"),
        "The fields the records carried that the service does not read, and so did not keep, by field name; empty with strict=true, where such a field fails its record.",
    )
}

/// What a single create answers: the record as read, and what of the
/// request was not kept.
pub fn created_record(schema: &str) -> Value {
    json!({"allOf": [
        reference(schema),
        {
            "type": "object",
            "required": ["ignored_fields"],
            "properties": {"ignored_fields": ignored_fields()},
        },
    ]})
}

/// An entry of a subscription list: an event type or a wildcard.
fn subscription() -> Value {
    let mut entries = vec!["*", "migration_job.*"];
    entries.extend(EVENT_TYPES);
    one_of(&entries, "")
}

/// The webhook schemas. The event's job is the `Job` schema less `errors`,
/// derived from it so the two cannot drift apart.
fn webhook_schemas(schemas: &mut Map<String, Value>) {
    let mut job = schemas["Job"].clone();
    job["properties"]
        .as_object_mut()
        .expect("Job has properties")
        .remove("errors");
    job["required"]
        .as_array_mut()
        .expect("Job has required fields")
        .retain(|name| name != "errors");
    job["description"] = json!(
        "The job as GET .../migration/jobs/{job_id} returns it when the event was written, \
         without errors: fetch the job for those."
    );
    let events = || {
        array(
            one_of(&EVENT_TYPES, ""),
            "The event types the endpoint receives.",
        )
    };
    let endpoint = || {
        vec![
            ("id", uuid("")),
            ("object", one_of(&["webhook_endpoint"], "")),
            ("entity_id", uuid("")),
            (
                "mode",
                one_of(&["test", "live"], "The mode of the key that created it."),
            ),
            ("url", string("Where events are posted.")),
            ("enabled_events", events()),
            (
                "events",
                described(events(), "The same list (the vendor's deprecated name)."),
            ),
            ("created_at", timestamp("")),
        ]
    };
    let required = [
        "id",
        "object",
        "entity_id",
        "mode",
        "url",
        "enabled_events",
        "events",
        "created_at",
    ];
    let mut with_secret = endpoint();
    with_secret.push((
        "secret",
        string(
            "The signing secret (whsec_...), shown only in this response: check each \
             delivery's Arcus-Signature with it.",
        ),
    ));
    let mut with_secret_required = required.to_vec();
    with_secret_required.push("secret");
    let mut endpoint_list = list_of("WebhookEndpoint");
    endpoint_list["properties"]["data"]["description"] = json!("Oldest first; all of them.");
    let mut delivery_list = list_of("WebhookDelivery");
    for list in [&mut endpoint_list, &mut delivery_list] {
        list["properties"]
            .as_object_mut()
            .expect("a list has properties")
            .remove("total_count");
    }
    let entries = [
        (
            "WebhookEndpointCreate",
            object(
                &["url"],
                vec![
                    (
                        "url",
                        json!({"type": "string", "format": "uri", "maxLength": 2048,
                               "description": "An absolute http or https URL, without a user name or password."}),
                    ),
                    (
                        "enabled_events",
                        json!({"type": "array", "minItems": 1, "items": subscription(),
                               "description": "The event types to receive: names, * for all, or migration_job.* for the family; all of them when left out."}),
                    ),
                    (
                        "events",
                        json!({"type": "array", "minItems": 1, "items": subscription(),
                               "description": "Deprecated: enabled_events, which wins when both are given."}),
                    ),
                ],
            ),
        ),
        ("WebhookEndpoint", object(&required, endpoint())),
        (
            "WebhookEndpointWithSecret",
            object(&with_secret_required, with_secret),
        ),
        ("WebhookEndpointList", endpoint_list),
        (
            "WebhookEndpointDeleted",
            object(
                &["id", "object", "deleted"],
                vec![
                    ("id", uuid("")),
                    ("object", one_of(&["webhook_endpoint"], "")),
                    ("deleted", json!({"type": "boolean", "const": true})),
                ],
            ),
        ),
        (
            "WebhookDelivery",
            object(
                &[
                    "id",
                    "object",
                    "endpoint_id",
                    "job_id",
                    "event_type",
                    "status",
                    "attempts",
                    "created_at",
                ],
                vec![
                    ("id", uuid("The event's id.")),
                    ("object", one_of(&["webhook_delivery"], "")),
                    ("endpoint_id", uuid("")),
                    ("job_id", uuid("")),
                    ("event_type", one_of(&EVENT_TYPES, "")),
                    (
                        "status",
                        one_of(
                            &["pending", "delivered", "failed"],
                            "pending: to be attempted (again); delivered: the endpoint answered \
                             2xx; failed: out of attempts, or the endpoint was deleted.",
                        ),
                    ),
                    (
                        "attempts",
                        json!({"type": "integer", "description": "Attempts made so far."}),
                    ),
                    (
                        "last_status",
                        json!({"type": ["integer", "null"], "description": "The HTTP status of the last attempt; null when it got no answer."}),
                    ),
                    ("last_error", nullable_string("What went wrong last.")),
                    (
                        "next_attempt_at",
                        json!({"type": ["string", "null"], "format": "date-time", "description": "When a pending delivery is attempted next."}),
                    ),
                    (
                        "delivered_at",
                        json!({"type": ["string", "null"], "format": "date-time"}),
                    ),
                    ("created_at", timestamp("When the job ended.")),
                ],
            ),
        ),
        ("WebhookDeliveryList", delivery_list),
        ("WebhookEventJob", job),
        (
            "WebhookEvent",
            object(
                &[
                    "id",
                    "object",
                    "type",
                    "created_at",
                    "api_version",
                    "entity_id",
                    "livemode",
                    "mode",
                    "data",
                ],
                vec![
                    (
                        "id",
                        uuid(
                            "The event's id, the same on every attempt (also in Arcus-Event-Id): \
                             drop duplicates by it.",
                        ),
                    ),
                    ("object", one_of(&["event"], "")),
                    (
                        "type",
                        one_of(&EVENT_TYPES, "migration_job.<the job's final status>."),
                    ),
                    ("created_at", timestamp("When the job ended.")),
                    (
                        "api_version",
                        one_of(
                            &[webhooks::API_VERSION],
                            "The version of the vendor's API whose envelope this follows.",
                        ),
                    ),
                    ("entity_id", uuid("The job's entity.")),
                    (
                        "livemode",
                        json!({"type": "boolean", "description": "true for a live job, false for a test job."}),
                    ),
                    ("mode", one_of(&["test", "live"], "The job's mode.")),
                    (
                        "data",
                        object(&["object"], vec![("object", reference("WebhookEventJob"))]),
                    ),
                ],
            ),
        ),
    ];
    for (name, schema) in entries {
        schemas.insert(name.to_owned(), schema);
    }
}

/// The events the service sends (OpenAPI's `webhooks`), one per type.
fn webhook_events() -> Map<String, Value> {
    let header = |name: &str, description: &str| {
        json!({"name": name, "in": "header", "required": true, "description": description,
               "schema": {"type": "string"}})
    };
    EVENT_TYPES
        .iter()
        .map(|event| {
            let status = event.trim_start_matches("migration_job.");
            let operation = json!({
                "summary": format!("A migration job ended {status}."),
                "description": "POSTed by the workers to every endpoint of the job's entity and mode that receives this type. Check Arcus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" keyed with the endpoint's secret>; refuse a t far from now. Answer 2xx within the timeout (10 s by default); anything else, or no answer, is retried with exponential backoff (30 s doubling, up to 6 h between attempts, 12 attempts by default). An event may arrive more than once: drop duplicates by its id.",
                "tags": ["webhooks"],
                "security": [],
                "parameters": [
                    header("Arcus-Signature", "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">."),
                    header("Arcus-Event-Id", "The event's id, as in the body."),
                    header("Arcus-Event-Type", "The event's type, as in the body."),
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": reference("WebhookEvent")}}},
                "responses": {
                    "2XX": {"description": "The event is delivered."},
                    "default": {"description": "The event is attempted again later."},
                },
            });
            ((*event).to_owned(), json!({"post": operation}))
        })
        .collect()
}

pub(crate) fn resource_names() -> Vec<&'static str> {
    Resource::ALL.iter().map(|r| r.as_str()).collect()
}

/// A route's entry in the document. Its path parameters come from the
/// route's template and its security from the route's policy, so neither is
/// written here.
pub struct Operation {
    summary: String,
    tag: &'static str,
    parameters: Vec<Value>,
    request: Option<Value>,
    responses: Vec<(&'static str, Value)>,
    errors: &'static [(&'static str, &'static str)],
}

impl Operation {
    pub fn new(tag: &'static str, summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            tag,
            parameters: Vec::new(),
            request: None,
            responses: Vec::new(),
            errors: &[],
        }
    }

    /// Query and header parameters.
    pub fn parameters(mut self, parameters: impl IntoIterator<Item = Value>) -> Self {
        self.parameters.extend(parameters);
        self
    }

    /// The JSON body's schema.
    pub fn request(mut self, schema: Value) -> Self {
        self.request = Some(schema);
        self
    }

    /// A JSON response.
    pub fn responds(self, status: &'static str, description: &str, schema: Value) -> Self {
        self.responds_with(
            status,
            json!({"description": description, "content": {"application/json": {"schema": schema}}}),
        )
    }

    /// A response as the document writes it.
    pub fn responds_with(mut self, status: &'static str, response: Value) -> Self {
        self.responses.push((status, response));
        self
    }

    /// The errors of this operation beyond those any authenticated operation
    /// can give.
    pub fn errors(mut self, errors: &'static [(&'static str, &'static str)]) -> Self {
        self.errors = errors;
        self
    }

    /// The operation of `method template`, secured by `policy`.
    fn render(&self, template: &str, policy: &Policy) -> Value {
        let mut parameters: Vec<Value> = path_parameters(template)
            .map(|name| path_parameter(name, template))
            .collect();
        parameters.extend(self.parameters.iter().cloned());
        let mut responses = Map::new();
        let common = if *policy == Policy::Public {
            &[][..]
        } else {
            &AUTHENTICATED_ERRORS[..]
        };
        for (status, description) in common.iter().chain(self.errors) {
            responses.insert(
                (*status).to_owned(),
                json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}}),
            );
        }
        for (status, response) in &self.responses {
            responses.insert((*status).to_owned(), response.clone());
        }
        let mut op = json!({"summary": self.summary, "tags": [self.tag], "parameters": parameters, "responses": responses});
        let (needs, resource_write) = match policy {
            Policy::Public => (Vec::new(), false),
            Policy::Scopes(needs) => (needs.clone(), false),
            Policy::ScopesAndResourceWrite(needs) => (needs.clone(), true),
        };
        // OpenAPI lists the alternatives: one scope chosen from each need.
        let alternatives = needs.iter().fold(vec![Vec::new()], |chosen, need| {
            chosen
                .iter()
                .flat_map(|so_far: &Vec<&str>| {
                    need.iter().map(move |scope| {
                        let mut next = so_far.clone();
                        next.push(*scope);
                        next
                    })
                })
                .collect()
        });
        op["security"] = if needs.is_empty() {
            json!([])
        } else {
            alternatives
                .iter()
                .map(|scopes| json!({"bearer": scopes}))
                .collect()
        };
        if !needs.is_empty() {
            let mut description: Vec<String> = needs.iter().map(|need| need.join(" or ")).collect();
            if resource_write {
                let each: Vec<String> = Resource::ALL
                    .iter()
                    .map(|r| format!("{} for {}", r.write_scopes().join(" or "), r.as_str()))
                    .collect();
                description.push(format!(
                    "the write scope of the resource in the path ({})",
                    each.join(", ")
                ));
            }
            op["description"] = json!(format!("Scopes: {}", description.join(", and ")));
        }
        if let Some(body) = &self.request {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        op
    }
}

/// The error responses every authenticated operation can give.
const AUTHENTICATED_ERRORS: [(&str, &str); 7] = [
    ("400", "A malformed request: see code and param."),
    (
        "401",
        "missing_api_key, invalid_api_key or api_key_expired.",
    ),
    (
        "403",
        "entity_access_denied, insufficient_scope (see required) or ip_not_allowlisted.",
    ),
    ("408", "request_timeout: the request took too long."),
    ("429", "rate_limit_exceeded: see the Retry-After header."),
    ("500", "internal_error: nothing was applied."),
    (
        "503",
        "service_unavailable: the database was briefly unreachable and nothing was \
         applied; retry after the Retry-After header.",
    ),
];

/// The names of a template's path parameters, in order.
fn path_parameters(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// A path parameter as every route that has it documents it.
fn path_parameter(name: &str, template: &str) -> Value {
    let schema = json!({"type": "string", "format": "uuid"});
    let (description, schema) = match name {
        "entity_id" => ("The entity the key belongs to.", schema),
        "job_id" => ("The job.", schema),
        "endpoint_id" => ("The webhook endpoint.", schema),
        "id" => ("The record.", schema),
        "resource" => (
            "The resource the records are of.",
            json!({"type": "string", "enum": resource_names()}),
        ),
        other => panic!("{template}: the path parameter {other} is not described"),
    };
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

/// A query parameter.
pub(crate) fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// The page size of every list.
pub(crate) fn limit() -> Value {
    query(
        "limit",
        "1 to 100, default 20.",
        json!({"type": "integer", "minimum": 1, "maximum": 100}),
    )
}

/// The paging parameters of a list whose cursor is an id.
pub(crate) fn paging() -> Vec<Value> {
    vec![
        limit(),
        query(
            "starting_after",
            "An id: the page after it.",
            json!({"type": "string", "format": "uuid"}),
        ),
        query(
            "ending_before",
            "An id: the page before it (not with starting_after).",
            json!({"type": "string", "format": "uuid"}),
        ),
    ]
}

/// Every documented route of the route tables.
fn paths() -> Map<String, Value> {
    let mut paths = Map::new();
    for route in routes::all() {
        if let Doc::Operation(operation) = &route.doc {
            let item = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
            item[route.method.as_str().to_lowercase()] =
                operation.render(&route.path, &route.policy);
        }
    }
    paths
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Arcus migration API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Bulk import of accounts, products, orders, journal entries, vendor bills and AP payments into the Arcus ERP: submit up to 1,000 records per job, watch the job, read the records back, reconcile. Every error has the body of the Error schema; every response carries X-Request-Id; authenticated responses carry X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "migration", "description": "Bulk imports and their jobs."},
            {"name": "records", "description": "The records, read back or created one at a time."},
            {"name": "ledger", "description": "The chart of accounts."},
            {"name": "reconciliation", "description": "Proof of what was loaded."},
            {"name": "webhooks", "description": "Signed events announcing jobs' ends, posted to the endpoints an entity registers."},
            {"name": "operations", "description": "Probes and metrics."},
        ],
        "paths": paths(),
        "webhooks": webhook_events(),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key: ark_test_ent_... or ark_live_ent_..., issued per entity with scopes."},
            },
            "schemas": schemas(),
        },
    })
}

/// The document as committed: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared field of `fields` is in `schema` with its limits, and
    /// `schema` has no property that is not declared.
    fn holds(schema: &Value, fields: &[Field], at: &str) {
        let properties = schema["properties"].as_object().expect("properties");
        let mut declared = Vec::new();
        for field in fields {
            for (alias, name) in field.aliases {
                assert_eq!(
                    properties.get(*alias).map(|p| p["type"].clone()),
                    properties.get(*name).map(|p| p["type"].clone()),
                    "{at}{alias} is documented as {name} is"
                );
                declared.push((*alias).to_owned());
                let rules = schema["allOf"].to_string();
                assert!(rules.contains(alias), "{at}{alias}: one of the two");
            }
            for name in field.names() {
                let property = &properties
                    .get(&name)
                    .unwrap_or_else(|| panic!("{at}{name} is not documented"));
                declared.push(name.clone());
                let limit = |key: &str| property[key].clone();
                match field.kind {
                    Kind::Text { max } | Kind::Email { max } => {
                        assert_eq!(limit("maxLength"), json!(max), "{at}{name}");
                    }
                    Kind::Enum(names) => {
                        let documented: Vec<Value> = limit("enum")
                            .as_array()
                            .expect("enum")
                            .iter()
                            .filter(|v| !v.is_null())
                            .cloned()
                            .collect();
                        assert_eq!(json!(documented), json!(names), "{at}{name}");
                    }
                    Kind::Money => assert_eq!(limit("minimum"), json!(0), "{at}{name}"),
                    Kind::Positive => assert_eq!(limit("exclusiveMinimum"), json!(0), "{at}{name}"),
                    Kind::Count => assert_eq!(limit("minimum"), json!(1), "{at}{name}"),
                    Kind::Texts { items, max } => assert_eq!(
                        (limit("maxItems"), property["items"]["maxLength"].clone()),
                        (json!(items), json!(max)),
                        "{at}{name}"
                    ),
                    Kind::Percent => assert_eq!(
                        (limit("minimum"), limit("maximum")),
                        (json!(0), json!(100)),
                        "{at}{name}"
                    ),
                    Kind::Object { of } => holds(property, of, &format!("{at}{name}.")),
                    Kind::Items { min, max, of } => {
                        assert_eq!(
                            (limit("minItems"), limit("maxItems")),
                            (json!(min), json!(max)),
                            "{at}{name}"
                        );
                        holds(&property["items"], of, &format!("{at}{name}[]."));
                    }
                    Kind::Reference | Kind::GlAccount => {
                        let rules = schema["allOf"].to_string();
                        assert!(rules.contains(&name), "{at}{name}: the pair's rule");
                    }
                    Kind::Date | Kind::DateOrTime | Kind::Bool => {}
                }
                let required = schema["required"]
                    .as_array()
                    .expect("required")
                    .contains(&json!(name));
                let pair = matches!(field.kind, Kind::Reference | Kind::GlAccount);
                let aliased = field.aliases.iter().any(|(_, target)| *target == name);
                assert_eq!(
                    required,
                    field.required && !pair && !aliased,
                    "{at}{name} required"
                );
            }
        }
        for name in properties.keys() {
            assert!(
                declared.contains(name) || (at.is_empty() && name == "external_id"),
                "{at}{name} is documented but not declared"
            );
        }
    }

    #[test]
    fn the_record_schemas_are_the_declared_fields() {
        let document = document();
        for resource in Resource::ALL {
            let schema =
                &document["components"]["schemas"][format!("{}Create", schema_name(resource))];
            holds(schema, domain::import::fields(resource), "");
        }
    }
}
