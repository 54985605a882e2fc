//! The set-based handlers against the same records applied one at a time.
//!
//! Random batches full of in-batch dependencies (external ids repeated within
//! the batch, skus shared between records, components naming records before
//! and after them, parents updated or replaced after their variants took a
//! sku, references that name nothing, GL accounts that take no postings,
//! entries in a closed period, bills already paid) are imported twice into two
//! entities holding the same records: once as one batch, once record by
//! record. Every conflict mode must give the same counts, the same errors
//! (code, field and message) for the same records, and leave the same rows,
//! numbers and audit events.

use domain::audit::Actor;
use domain::import::{ImportError, Tally, import_records};
use domain::{ConflictMode, Mode, Resource, Tenant};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use testkit::TestDatabase;

use crate::import_context;

const MODES: [ConflictMode; 4] = [
    ConflictMode::Skip,
    ConflictMode::Update,
    ConflictMode::Replace,
    ConflictMode::Error,
];

#[tokio::test]
async fn products_in_one_batch_end_as_they_do_one_at_a_time() {
    let setup = |rng: &mut StdRng| {
        let base = (0..25).map(|i| product(rng, Some(i))).collect();
        vec![(Resource::Products, base)]
    };
    compare_seeds(Resource::Products, setup, |rng| product(rng, None)).await;
}

#[tokio::test]
async fn orders_in_one_batch_end_as_they_do_one_at_a_time() {
    let setup = |rng: &mut StdRng| {
        let accounts = (0..8)
            .map(|i| json!({"external_id": format!("C{i}"), "name": format!("Customer {i}"), "account_type": "business"}))
            .chain((0..3).map(|i| json!({"external_id": format!("V{i}"), "name": format!("Vendor {i}"), "account_type": "vendor"})))
            .collect();
        let products = (0..15)
            .map(|i| {
                let mut p = json!({"external_id": format!("P{i}"), "title": format!("Product {i}"), "product_type": "physical"});
                if i % 3 != 0 {
                    p["list_price"] = json!(format!("{}.{:02}", i + 1, i * 7 % 100));
                }
                p
            })
            .collect();
        let base = (0..10).map(|_| order(rng)).collect();
        vec![
            (Resource::Accounts, accounts),
            (Resource::Products, products),
            (Resource::Orders, base),
        ]
    };
    compare_seeds(Resource::Orders, setup, order).await;
}

#[tokio::test]
async fn accounts_in_one_batch_end_as_they_do_one_at_a_time() {
    let setup =
        |rng: &mut StdRng| vec![(Resource::Accounts, (0..10).map(|_| account(rng)).collect())];
    compare_seeds(Resource::Accounts, setup, account).await;
}

#[tokio::test]
async fn journal_entries_in_one_batch_end_as_they_do_one_at_a_time() {
    let setup = |rng: &mut StdRng| {
        let base = (0..10).map(|i| journal_entry(rng, Some(i))).collect();
        vec![(Resource::JournalEntries, base)]
    };
    compare_seeds(Resource::JournalEntries, setup, |rng| {
        journal_entry(rng, None)
    })
    .await;
}

#[tokio::test]
async fn vendor_bills_in_one_batch_end_as_they_do_one_at_a_time() {
    let setup = |rng: &mut StdRng| {
        let accounts = (0..3)
            .map(|i| json!({"external_id": format!("V{i}"), "name": format!("Vendor {i}"), "account_type": "vendor"}))
            .chain(["business", "lead"].iter().enumerate().map(|(i, account_type)| {
                json!({"external_id": format!("C{i}"), "name": format!("Customer {i}"), "account_type": account_type})
            }))
            .collect();
        let products = (0..5)
            .map(|i| json!({"external_id": format!("P{i}"), "title": format!("Product {i}"), "product_type": "physical"}))
            .collect();
        let base = (0..10).map(|i| bill(rng, Some(i))).collect();
        // The first bills of the setup are partly paid, so their vendor
        // cannot change and their total cannot fall below what was paid.
        let payments = (0..5)
            .map(|i| {
                json!({"external_id": format!("PAY{i}"), "vendor_external_id": format!("V{}", i % 3),
                       "payment_date": "2026-07-01", "amount": "50.00", "method": "ach",
                       "applications": [{"bill_external_id": format!("B{i}"), "amount": "50.00"}]})
            })
            .collect();
        vec![
            (Resource::Accounts, accounts),
            (Resource::Products, products),
            (Resource::VendorBills, base),
            (Resource::ApPayments, payments),
        ]
    };
    compare_seeds(Resource::VendorBills, setup, |rng| bill(rng, None)).await;
}

/// A database with one entity: these tests call the import directly.
async fn app_without_workers() -> (TestDatabase, Tenant) {
    let app = TestDatabase::create(5).await;
    let tenant = app.tenant().await;
    (app, tenant)
}

/// A constraint no look-up foresees (a variant the update drops is another
/// product's component) fails the statement of the whole chunk: the chunk is
/// split down to the one record to blame, which fails alone.
#[tokio::test]
async fn a_constraint_failure_fails_its_own_record_and_no_other() {
    let (app, tenant) = app_without_workers().await;
    let records = |title: &str| -> Vec<Value> {
        (0..64)
            .map(|i| {
                json!({"external_id": format!("P{i}"), "title": format!("{title} {i}"),
                       "product_type": "variant_parent",
                       "variants": [{"title": "S", "sku": format!("P{i}-S"), "product_type": "physical"}]})
            })
            .collect()
    };
    let created = import(
        &app.pool,
        tenant,
        Resource::Products,
        ConflictMode::Skip,
        &records("Old"),
        false,
    )
    .await
    .expect("imports");
    assert_eq!(created.created, 64);
    let variant: Uuid = sqlx::query_scalar("select id from products where sku = 'P40-S'")
        .fetch_one(&app.pool)
        .await
        .expect("variant");
    let bundle = [
        json!({"external_id": "BUNDLE", "title": "Bundle", "product_type": "box",
                         "components": [{"product_id": variant, "quantity": 1}]}),
    ];
    import(
        &app.pool,
        tenant,
        Resource::Products,
        ConflictMode::Skip,
        &bundle,
        false,
    )
    .await
    .expect("bundle");

    let tally = import(
        &app.pool,
        tenant,
        Resource::Products,
        ConflictMode::Update,
        &records("New"),
        false,
    )
    .await
    .expect("imports");
    assert_eq!((tally.updated, tally.failed), (63, 1), "{tally:?}");
    assert_eq!(tally.errors[0].index, 40);
    assert_eq!(tally.errors[0].code, "product_in_use");
    let titles: Vec<String> = sqlx::query_scalar(
        "select title from products where external_id in ('P39', 'P40', 'P41') order by external_id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("titles");
    assert_eq!(titles, ["New 39", "Old 40", "New 41"]);
    let variants: i64 =
        sqlx::query_scalar("select count(*) from products where parent_product_id is not null")
            .fetch_one(&app.pool)
            .await
            .expect("variants");
    assert_eq!(variants, 64, "every parent keeps one variant");
}

/// A concurrent job inserts a record of the batch between the batch's
/// look-up and its insert: the batch's insert fails on the provenance key,
/// and the record is applied again, by its conflict mode, to the record the
/// other job committed.
#[tokio::test]
async fn a_record_a_concurrent_job_inserts_first_is_applied_to_it() {
    let (app, tenant) = app_without_workers().await;
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"external_id": format!("P{i}"), "title": format!("Batch {i}"), "product_type": "physical"}))
        .collect();
    // The other job has inserted P7 and not yet committed.
    let actor = Actor::key(Uuid::nil(), None);
    let ctx = import_context(tenant, Resource::Products, ConflictMode::Skip, &actor);
    let mut other = app.pool.begin().await.expect("tx");
    let first = [json!({"external_id": "P7", "title": "Other job", "product_type": "physical"})];
    import_records(&mut other, &ctx, &first, 0)
        .await
        .expect("imports");

    let pool = app.pool.clone();
    let batch_job = tokio::spawn(async move {
        import(
            &pool,
            tenant,
            Resource::Products,
            ConflictMode::Update,
            &batch,
            false,
        )
        .await
    });
    // The batch's insert waits on the other job's uncommitted row.
    testkit::eventually("the batch waits on the other job's row", || async {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        )
        .fetch_one(&app.pool)
        .await
        .expect("activity");
        waiting > 0
    })
    .await;
    other.commit().await.expect("commit");

    let tally = batch_job.await.expect("joins").expect("imports");
    assert_eq!(
        (tally.created, tally.updated, tally.failed),
        (9, 1, 0),
        "{tally:?}"
    );
    let title: String = sqlx::query_scalar("select title from products where external_id = 'P7'")
        .fetch_one(&app.pool)
        .await
        .expect("P7");
    assert_eq!(title, "Batch 7");
}

/// A random product: `base` products take distinct external ids in turn;
/// batch products draw theirs, their skus and their components from small
/// pools so that records of a batch keep meeting each other.
fn product(rng: &mut StdRng, base: Option<u32>) -> Value {
    let external_id = match base {
        Some(i) => format!("P{i}"),
        None => format!("P{}", rng.random_range(0..40)),
    };
    let product_type = match rng.random_range(0..10) {
        0..=3 => "physical",
        4 => "service",
        5 | 6 => "kit",
        7 => "box",
        _ => "variant_parent",
    };
    let mut record = json!({
        "external_id": external_id,
        "title": format!("Product {}", rng.random_range(0..1000)),
        "product_type": product_type,
    });
    if rng.random_bool(0.7) {
        record["sku"] = json!(format!("S{}", rng.random_range(0..60)));
    }
    if rng.random_bool(0.5) {
        record["list_price"] = json!(format!(
            "{}.{:02}",
            rng.random_range(0..100),
            rng.random_range(0..100)
        ));
    }
    if rng.random_bool(0.2) {
        record["description"] = json!("Imported");
    }
    if matches!(product_type, "kit" | "box") {
        let components: Vec<Value> = (0..rng.random_range(1..4))
            .map(|_| {
                let quantity = rng.random_range(1..4);
                if rng.random_bool(0.05) {
                    json!({"product_id": Uuid::new_v4(), "quantity": quantity})
                } else {
                    json!({"product_external_id": format!("P{}", rng.random_range(0..45)), "quantity": quantity})
                }
            })
            .collect();
        record["components"] = Value::Array(components);
    }
    if product_type == "variant_parent" {
        let variants: Vec<Value> = (0..rng.random_range(1..4))
            .map(|v| {
                let mut variant =
                    json!({"title": format!("Variant {v}"), "product_type": "physical"});
                if rng.random_bool(0.6) {
                    let pool = if rng.random_bool(0.5) { "S" } else { "V" };
                    variant["sku"] = json!(format!("{pool}{}", rng.random_range(0..30)));
                }
                variant
            })
            .collect();
        record["variants"] = Value::Array(variants);
    }
    if base.is_none() && rng.random_bool(0.04) {
        record.as_object_mut().expect("an object").remove("title");
    }
    record
}

/// A random order of the five document types, for customers and vendors that
/// exist or not, with lines whose products exist or not, priced or not.
fn order(rng: &mut StdRng) -> Value {
    let document_type = [
        "quote",
        "sales_order",
        "invoice",
        "return",
        "purchase_order",
    ][rng.random_range(0..5)];
    let account = match rng.random_range(0..10) {
        0 => "C99".to_owned(),
        1 | 2 => format!("V{}", rng.random_range(0..3)),
        _ => format!("C{}", rng.random_range(0..8)),
    };
    let lines: Vec<Value> = (0..rng.random_range(1..6))
        .map(|_| {
            let mut line = json!({
                "product_external_id": format!("P{}", rng.random_range(0..17)),
                "quantity": rng.random_range(1..6),
            });
            if rng.random_bool(0.6) {
                line["sell_rate"] = json!(format!(
                    "{}.{:03}",
                    rng.random_range(0..50),
                    rng.random_range(0..1000)
                ));
            }
            line
        })
        .collect();
    let mut record = json!({
        "external_id": format!("O{}", rng.random_range(0..30)),
        "document_type": document_type,
        "account_external_id": account,
        "order_date": format!("2026-0{}-1{}", rng.random_range(1..10), rng.random_range(0..10)),
        "line_items": lines,
    });
    if rng.random_bool(0.3) {
        record["notes"] = json!(format!("note {}", rng.random_range(0..5)));
    }
    if rng.random_bool(0.04) {
        record["line_items"] = json!([]);
    }
    record
}

/// A random customer or vendor, sometimes with addresses, sometimes invalid.
fn account(rng: &mut StdRng) -> Value {
    let account_type = ["business", "individual", "lead", "vendor"][rng.random_range(0..4)];
    let mut record = json!({
        "external_id": format!("A{}", rng.random_range(0..25)),
        "name": format!("Account {}", rng.random_range(0..1000)),
        "account_type": account_type,
    });
    match rng.random_range(0..10) {
        0 => record["email"] = json!("not an email"),
        1..=4 => record["email"] = json!(format!("a{}@example.com", rng.random_range(0..100))),
        _ => {}
    }
    if rng.random_bool(0.4) {
        let addresses: Vec<Value> = (0..rng.random_range(1..3))
            .map(|i| {
                json!({"type": if i == 0 { "billing" } else { "shipping" },
                            "line1": format!("{} Main St", rng.random_range(1..100)),
                            "city": "Springfield", "is_default_billing": i == 0})
            })
            .collect();
        record["addresses"] = Value::Array(addresses);
    }
    record
}

/// The postable accounts of the standard chart.
const LEAVES: [&str; 8] = [
    "1010", "1100", "1200", "2010", "3010", "4010", "6010", "6020",
];

/// A journal line or a bill item, with its GL account and sometimes a
/// description: in the setup always a postable account; in a batch sometimes
/// a header, the account `close_books` makes inactive, or one the chart does
/// not have.
fn posting(rng: &mut StdRng, base: bool) -> Value {
    let mut posting = if base || rng.random_bool(0.92) {
        json!({"gl_account_number": LEAVES[rng.random_range(0..LEAVES.len())]})
    } else {
        match rng.random_range(0..5) {
            0 => json!({"gl_account_number": "1000"}),
            1 => json!({"gl_account_number": "6000"}),
            2 => json!({"gl_account_number": "6100"}),
            3 => json!({"gl_account_number": "9999"}),
            _ => json!({"gl_account_id": Uuid::new_v4()}),
        }
    };
    if rng.random_bool(0.4) {
        posting["description"] = json!(format!("posting {}", rng.random_range(0..5)));
    }
    posting
}

/// An amount in cents, as the decimal string a record carries.
fn money(cents: i64) -> Value {
    json!(format!("{}.{:02}", cents / 100, cents % 100))
}

/// A random journal entry: balanced debits and credits in random order, now
/// and then unbalanced or posting to an account it may not, dated in or after
/// the period `close_books` closes, with or without the bypass. The setup's
/// entries are valid and take distinct external ids in turn.
fn journal_entry(rng: &mut StdRng, base: Option<u32>) -> Value {
    let external_id = match base {
        Some(i) => format!("J{i}"),
        None => format!("J{}", rng.random_range(0..30)),
    };
    let debits: Vec<i64> = (0..rng.random_range(1..3))
        .map(|_| rng.random_range(1..50_000))
        .collect();
    let total: i64 = debits.iter().sum();
    let credits = if total > 1 && rng.random_bool(0.5) {
        let first = rng.random_range(1..total);
        vec![first, total - first]
    } else {
        vec![total]
    };
    let mut sides: Vec<(&str, i64)> = debits
        .into_iter()
        .map(|d| ("debit_amount", d))
        .chain(credits.into_iter().map(|c| ("credit_amount", c)))
        .collect();
    sides.shuffle(rng);
    if base.is_none() && rng.random_bool(0.04) {
        sides[0].1 += 1;
    }
    let lines: Vec<Value> = sides
        .into_iter()
        .map(|(side, cents)| {
            let mut line = posting(rng, base.is_some());
            line[side] = money(cents);
            line
        })
        .collect();
    let month = rng.random_range(1..7);
    let mut record = json!({
        "external_id": external_id,
        "entry_date": format!("2026-{month:02}-{:02}", rng.random_range(1..29)),
        "lines": lines,
    });
    if rng.random_bool(0.4) || (base.is_some() && month <= 2) {
        record["bypass_period_check"] = json!(true);
    }
    if rng.random_bool(0.5) {
        record["description"] = json!(format!("entry {}", rng.random_range(0..5)));
    }
    record
}

/// A random vendor bill: for a vendor, a customer or no account at all, with
/// items priced by amount or by quantity and unit cost, posting to GL
/// accounts that may not take them, and naming products that exist or not.
/// The setup's bills are valid, each for a vendor in turn, and large enough
/// for the setup's payments.
fn bill(rng: &mut StdRng, base: Option<u32>) -> Value {
    let (external_id, vendor) = match base {
        Some(i) => (
            format!("B{i}"),
            ("vendor_external_id", json!(format!("V{}", i % 3))),
        ),
        None => (
            format!("B{}", rng.random_range(0..30)),
            match rng.random_range(0..20) {
                0 | 1 => (
                    "vendor_external_id",
                    json!(format!("C{}", rng.random_range(0..2))),
                ),
                2 => ("vendor_external_id", json!("V9")),
                3 => ("vendor_id", json!(Uuid::new_v4())),
                _ => (
                    "vendor_external_id",
                    json!(format!("V{}", rng.random_range(0..3))),
                ),
            },
        ),
    };
    let items: Vec<Value> = (0..rng.random_range(1..4))
        .map(|_| {
            let mut item = posting(rng, base.is_some());
            if base.is_some() {
                item["amount"] = money(rng.random_range(6_000..10_000));
            } else if rng.random_bool(0.5) {
                item["amount"] = money(rng.random_range(100..8_000));
            } else {
                item["quantity"] = json!(rng.random_range(1..5));
                item["unit_cost"] = json!(format!(
                    "{}.{:03}",
                    rng.random_range(0..40),
                    rng.random_range(0..1000)
                ));
            }
            match rng.random_range(0..20) {
                0..=7 => {
                    item["product_external_id"] = json!(format!("P{}", rng.random_range(0..6)))
                }
                8 if base.is_none() => item["product_id"] = json!(Uuid::new_v4()),
                _ => {}
            }
            item
        })
        .collect();
    let month = rng.random_range(1..7);
    let mut record = json!({
        "external_id": external_id,
        vendor.0: vendor.1,
        "bill_date": format!("2026-{month:02}-1{}", rng.random_range(0..10)),
        "items": items,
    });
    if rng.random_bool(0.5) {
        record["due_date"] = json!(format!("2026-{month:02}-2{}", rng.random_range(0..9)));
    }
    if base.is_none() && rng.random_bool(0.03) {
        record["due_date"] = json!("2025-12-31");
    }
    if rng.random_bool(0.5) {
        record["vendor_invoice_number"] = json!(format!("INV-{}", rng.random_range(0..100)));
    }
    if rng.random_bool(0.3) {
        record["notes"] = json!(format!("note {}", rng.random_range(0..5)));
    }
    record
}

/// The books of every entity a comparison runs in, before its setup records:
/// closed through February, with Payroll (6100) inactive. Only journal
/// entries and vendor bills look at them.
async fn close_books(pool: &PgPool, entity_id: Uuid) {
    sqlx::query(
        "update gl_accounts set is_active = false
         where entity_id = $1 and mode = 'test' and account_number = '6100'",
    )
    .bind(entity_id)
    .execute(pool)
    .await
    .expect("deactivate");
    let through = "2026-02-28".parse().expect("a date");
    domain::ledger::close_period(pool, entity_id, &[Mode::Test], through)
        .await
        .expect("close");
}

/// Compares batches of `resource` in every conflict mode, for four seeds:
/// each draws its setup, then a batch of 150 records.
async fn compare_seeds(
    resource: Resource,
    setup: impl Fn(&mut StdRng) -> Vec<(Resource, Vec<Value>)>,
    record: impl Fn(&mut StdRng) -> Value,
) {
    let app = TestDatabase::create(5).await;
    for seed in 0..4 {
        let mut rng = StdRng::seed_from_u64(seed);
        let setup = setup(&mut rng);
        let batch: Vec<Value> = (0..150).map(|_| record(&mut rng)).collect();
        for mode in MODES {
            compare(&app.pool, &setup, resource, &batch, mode, seed).await;
        }
    }
}

/// Imports `batch` into two entities prepared alike, as one batch and one
/// record at a time, and asserts both end the same.
async fn compare(
    pool: &PgPool,
    setup: &[(Resource, Vec<Value>)],
    resource: Resource,
    batch: &[Value],
    mode: ConflictMode,
    seed: u64,
) {
    let mut runs = Vec::new();
    for one_at_a_time in [false, true] {
        let entity = domain::entities::create(pool, "Equivalence Co")
            .await
            .expect("entity");
        let tenant = Tenant {
            entity_id: entity.id,
            mode: Mode::Test,
        };
        close_books(pool, entity.id).await;
        for (resource, records) in setup {
            let tally = import(pool, tenant, *resource, ConflictMode::Skip, records, true)
                .await
                .expect("the setup imports");
            // Random setups have their failures too, the same in both.
            assert!(
                tally.succeeded > 0,
                "setup of {resource}: {:?}",
                tally.errors
            );
        }
        let outcome = import(pool, tenant, resource, mode, batch, one_at_a_time).await;
        runs.push((describe(outcome), rows(pool, resource, entity.id).await));
    }
    let (one_at_a_time, batched) = (runs.pop().expect("two"), runs.pop().expect("two"));
    assert_eq!(
        batched.0, one_at_a_time.0,
        "{resource} seed {seed} conflict_mode {mode:?}: outcomes differ"
    );
    assert_eq!(
        batched.1, one_at_a_time.1,
        "{resource} seed {seed} conflict_mode {mode:?}: rows differ"
    );
    // The run must have met the cases it is here for.
    if mode != ConflictMode::Error {
        let tally = batched.0.as_ref().expect("only error mode aborts");
        assert!(tally.failed > 0 && tally.succeeded > 0, "{tally:?}");
    }
}

/// Imports records on one transaction: as one batch, or one import per
/// record. An aborted batch is rolled back.
async fn import(
    pool: &PgPool,
    tenant: Tenant,
    resource: Resource,
    conflict_mode: ConflictMode,
    records: &[Value],
    one_at_a_time: bool,
) -> Result<Tally, ImportError> {
    let actor = Actor::key(Uuid::nil(), None);
    let ctx = import_context(tenant, resource, conflict_mode, &actor);
    let mut tx = pool.begin().await.expect("tx");
    let result = if one_at_a_time {
        let mut total = Tally::default();
        let mut result = Ok(());
        for (index, record) in (0..).zip(records) {
            match import_records(&mut tx, &ctx, std::slice::from_ref(record), index).await {
                Ok(tally) => {
                    total.succeeded += tally.succeeded;
                    total.failed += tally.failed;
                    total.created += tally.created;
                    total.updated += tally.updated;
                    total.skipped += tally.skipped;
                    total.replaced += tally.replaced;
                    total.errors.extend(tally.errors);
                }
                Err(ImportError::Aborted(mut abort)) => {
                    // One record at a time, the failures before the collision
                    // were reported by the earlier calls.
                    abort.earlier_failures = std::mem::take(&mut total.errors);
                    result = Err(ImportError::Aborted(abort));
                    break;
                }
                Err(e) => panic!("import: {e}"),
            }
        }
        result.map(|()| total)
    } else {
        import_records(&mut tx, &ctx, records, 0).await
    };
    match &result {
        Ok(_) => tx.commit().await.expect("commit"),
        Err(_) => tx.rollback().await.expect("rollback"),
    }
    result
}

/// The outcome as comparable text: ids differ between the two entities.
fn describe(outcome: Result<Tally, ImportError>) -> Result<Tally, String> {
    match outcome {
        Ok(mut tally) => {
            for e in &mut tally.errors {
                e.error = without_ids(&e.error);
            }
            Ok(tally)
        }
        Err(ImportError::Aborted(abort)) => {
            let failures: Vec<String> = abort
                .earlier_failures
                .iter()
                .chain([&abort.collision])
                .map(|f| format!("{} {} {}", f.index, f.code, without_ids(&f.error)))
                .collect();
            Err(failures.join("\n"))
        }
        Err(e) => panic!("import: {e}"),
    }
}

fn without_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && Uuid::try_parse(&rest[..36]).is_ok() {
            out.push_str("<id>");
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Every row the import could have touched, with references written as what
/// they name rather than by id, and the document sequences.
async fn rows(pool: &PgPool, resource: Resource, entity_id: Uuid) -> Vec<String> {
    let records = match resource {
        Resource::Accounts => {
            "select format('%L %L %L %L %L %L %L %L addresses=%L',
                    a.external_source, a.external_id, a.account_number, a.name, a.account_type,
                    a.email, a.phone, a.credit_limit,
                    (select string_agg(format('%L %L %L %L %L', d.address_type, d.line1, d.city,
                                              d.is_default_billing, d.is_default_shipping),
                                       ', ' order by d.position)
                     from account_addresses d where d.account_id = a.id)) as row
             from accounts a where a.entity_id = $1"
        }
        Resource::Products => {
            "select format('%L %L %L %L %L %L %L %L parent=%L components=%L',
                    p.external_source, p.external_id, p.title, p.product_type, p.sku,
                    p.description, p.list_price, p.cost,
                    (select format('%L %L %L', q.external_id, q.title, q.sku)
                     from products q where q.id = p.parent_product_id),
                    (select string_agg(format('%L %L %L *%s', c.external_id, c.title, c.sku,
                                              pc.quantity), ', ' order by pc.position)
                     from product_components pc join products c on c.id = pc.component_product_id
                     where pc.product_id = p.id)) as row
             from products p where p.entity_id = $1"
        }
        Resource::Orders => {
            "select format('%L %L %L %L %L %L %L %L %L %L lines=%L',
                    o.external_source, o.external_id, o.order_number, o.document_type,
                    a.external_id, o.order_date, o.notes, o.subtotal, o.order_total,
                    o.balance_due,
                    (select string_agg(format('%L x%s @%s =%s', p.external_id, l.quantity,
                                              l.sell_rate, l.line_total), ', ' order by l.position)
                     from order_lines l join products p on p.id = l.product_id
                     where l.order_id = o.id)) as row
             from orders o join accounts a on a.id = o.account_id where o.entity_id = $1"
        }
        // The audit rows keep their order, and name their entry by number.
        Resource::JournalEntries => {
            "select format('%L %L %L %L %L %L lines=%L',
                    e.external_source, e.external_id, e.entry_number, e.entry_date,
                    e.description, e.bypassed_period_check,
                    (select string_agg(format('%L %s %s %L', g.account_number, l.debit_amount,
                                              l.credit_amount, l.description),
                                       ', ' order by l.position)
                     from journal_lines l join gl_accounts g on g.id = l.gl_account_id
                     where l.entry_id = e.id)) as row
             from journal_entries e where e.entity_id = $1
             union all
             select format('audit %s %L %L %L %L', row_number() over (order by l.id), l.actor,
                           l.action, e.entry_number, l.details - 'journal_entry_id')
             from audit_log l
             left join journal_entries e on e.id = (l.details ->> 'journal_entry_id')::uuid
             where l.entity_id = $1"
        }
        Resource::VendorBills => {
            "select format('%L %L %L %L %L %L %L %L %L %L %L items=%L',
                    b.external_source, b.external_id, b.bill_number, v.external_id, b.bill_date,
                    b.due_date, b.vendor_invoice_number, b.notes, b.bill_total, b.amount_paid,
                    b.balance_due,
                    (select string_agg(format('%L %s %L %s %L %L', i.description, i.quantity,
                                              i.unit_cost, i.amount, p.external_id,
                                              g.account_number), ', ' order by i.position)
                     from vendor_bill_items i join gl_accounts g on g.id = i.gl_account_id
                     left join products p on p.id = i.product_id
                     where i.bill_id = b.id)) as row
             from vendor_bills b join accounts v on v.id = b.vendor_id where b.entity_id = $1"
        }
        Resource::ApPayments => unreachable!("AP payments are applied record by record"),
    };
    let sql = format!(
        "{records}
         union all
         select format('sequence %L %L', kind, last_value) from document_sequences
         where entity_id = $1
         order by 1"
    );
    sqlx::query_scalar(&sql)
        .bind(entity_id)
        .fetch_all(pool)
        .await
        .expect("rows")
}
