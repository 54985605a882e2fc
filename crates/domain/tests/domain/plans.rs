//! The plans of every statement the import runs, as Postgres executes them,
//! on tables the planner knows nothing of.
//!
//! A migration's first load meets a fresh database: no statistics, and plans
//! made on the first chunk, while the tables were empty, kept for as long as
//! the connection lives. Here `auto_explain` reports the plan of each
//! statement a chunk runs (foreign-key checks included) exactly as the handler
//! runs it, generic plan and all. Chunks of every resource, in every conflict
//! mode and with every kind of reference, run on empty tables, then on tables
//! holding 20,000 rows of the same entity that were never analyzed, both on
//! the connection that planned on the empty tables and on a new one. Every
//! scan must seek its keys: no sequential scan, every index condition covers
//! every column of its index, and no filter removes a row.
//!
//! The 20,000 rows are written with SQL, straight into the tables: the
//! handlers would take long to load them, and what is measured is the plans
//! of the handlers' statements, not the loading.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use domain::audit::Actor;
use domain::import::import_records;
use domain::{ConflictMode, Resource, Tenant};
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};
use uuid::Uuid;

use testkit::TestDatabase;

use crate::{SOURCE, import_context};

/// Rows of the entity in each resource table, and in its chart of accounts.
const ROWS: i32 = 20_000;

#[tokio::test]
async fn every_import_statement_seeks_its_keys_in_tables_never_analyzed() {
    check_plans(false).await;
}

/// `VACUUM ANALYZE` of the empty tables tells the planner they are empty: a
/// plan made then must not scan them once they are full.
#[tokio::test]
async fn every_import_statement_seeks_its_keys_in_tables_analyzed_while_empty() {
    check_plans(true).await;
}

async fn check_plans(analyzed_while_empty: bool) {
    let app = TestDatabase::create(5).await;
    let tenant = app.tenant().await;
    // Autovacuum would analyze the tables behind the test's back.
    let tables: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public'")
            .fetch_all(&app.pool)
            .await
            .expect("tables");
    for table in &tables {
        sqlx::query(&format!(
            "alter table {table} set (autovacuum_enabled = false)"
        ))
        .execute(&app.pool)
        .await
        .expect("autovacuum off");
        if analyzed_while_empty {
            sqlx::query(&format!("vacuum analyze {table}"))
                .execute(&app.pool)
                .await
                .expect("vacuum");
        }
    }
    let columns = index_columns(&app.pool).await;
    let plans = Plans::capture();

    let mut first = explained(&app.pool).await;
    let empty = run_round(&mut first, tenant, &plans, 0, &Fill::default()).await;
    check(&empty, &columns, "empty tables");

    let fill = fill(&app.pool, tenant).await;
    // What the planner believes of the filled tables: nothing, or that they
    // hold the few rows they held when analyzed (the chart of accounts).
    let believed: Vec<(String, f32, i64)> = sqlx::query_as(
        "select c.relname::text, c.reltuples,
                (select count(*) from pg_stats s
                 where s.schemaname = 'public' and s.tablename = c.relname)
         from pg_class c
         where c.relnamespace = 'public'::regnamespace
           and c.relname in ('products', 'accounts', 'orders', 'journal_entries',
                             'vendor_bills', 'ap_payments', 'gl_accounts')",
    )
    .fetch_all(&app.pool)
    .await
    .expect("statistics");
    for (table, reltuples, statistics) in believed {
        if analyzed_while_empty {
            assert!(reltuples < 100.0, "{table} analyzed at {reltuples} rows");
        } else {
            assert_eq!(
                (reltuples, statistics),
                (-1.0, 0),
                "{table} was never analyzed"
            );
        }
    }

    let kept = run_round(&mut first, tenant, &plans, 1, &fill).await;
    check(&kept, &columns, "full tables, plans made on the empty ones");
    let mut second = explained(&app.pool).await;
    let fresh = run_round(&mut second, tenant, &plans, 2, &fill).await;
    check(&fresh, &columns, "full tables, plans made on them");

    // The checks above pass vacuously if the look-ups never ran: each index a
    // look-up must seek its keys in was seen doing it.
    let seen: BTreeSet<&str> = fresh
        .iter()
        .flat_map(|p| p.scans.iter().map(|s| s.index.as_str()))
        .collect();
    for index in [
        "accounts_provenance_key",
        "products_provenance_key",
        "products_sku_key",
        "orders_provenance_key",
        "journal_entries_provenance_key",
        "vendor_bills_provenance_key",
        "ap_payments_provenance_key",
        "gl_accounts_number_key",
        "gl_accounts_pkey",
        "accounts_pkey",
        "products_pkey",
        "vendor_bills_pkey",
    ] {
        assert!(seen.contains(index), "no look-up used {index}: {seen:?}");
    }
}

/// What the tables hold besides what the rounds import: ids to refer to.
#[derive(Default)]
struct Fill {
    product: Option<Uuid>,
    customer: Option<Uuid>,
    vendor: Option<Uuid>,
    bill: Option<Uuid>,
    gl_account: Option<Uuid>,
}

/// One round of chunks: every resource created (with references by id and by
/// external id, to rows of the round and of the fill), then updated and
/// replaced, each chunk committed. Round `r` imports keys of its own.
async fn run_round(
    conn: &mut PoolConnection<Postgres>,
    tenant: Tenant,
    plans: &Plans,
    r: u32,
    fill: &Fill,
) -> Vec<Plan> {
    let id = |id: Option<Uuid>| id.map_or(Value::Null, |id| json!(id));
    let accounts: Vec<Value> = (0..6)
        .map(|i| {
            json!({"external_id": format!("A{r}-{i}"), "name": format!("Account {i}"),
                   "account_type": if i % 2 == 0 { "business" } else { "vendor" },
                   "addresses": [{"type": "billing", "line1": "1 Main St", "city": "Springfield"}]})
        })
        .collect();
    let mut products: Vec<Value> = (0..6)
        .map(|i| {
            json!({"external_id": format!("P{r}-{i}"), "title": format!("Product {i}"),
                   "product_type": "physical", "sku": format!("S{r}-{i}"), "list_price": "9.50"})
        })
        .collect();
    let mut components = vec![json!({"product_external_id": format!("P{r}-0"), "quantity": 2})];
    if let Some(product) = fill.product {
        components.push(json!({"product_id": product, "quantity": 1}));
        components.push(json!({"product_external_id": "F-7", "quantity": 1}));
    }
    products.push(json!({"external_id": format!("P{r}-kit"), "title": "Kit",
                         "product_type": "kit", "components": components}));
    products.push(json!({"external_id": format!("P{r}-parent"), "title": "Shirt",
                         "product_type": "variant_parent",
                         "variants": [{"title": "S", "sku": format!("V{r}-S"), "product_type": "physical"},
                                      {"title": "M", "sku": format!("V{r}-M"), "product_type": "physical"}]}));
    let mut lines = vec![json!({"product_external_id": format!("P{r}-1"), "quantity": 2})];
    if fill.product.is_some() {
        lines.push(json!({"product_id": id(fill.product), "quantity": 1, "sell_rate": "3.00"}));
        lines.push(json!({"product_external_id": "F-9", "quantity": 3}));
    }
    let orders: Vec<Value> = (0..4)
        .map(|i| {
            let mut order = json!({"external_id": format!("O{r}-{i}"), "document_type": "sales_order",
                                   "order_date": "2026-03-01", "line_items": lines});
            match (i, fill.customer) {
                (1, Some(customer)) => order["account_id"] = json!(customer),
                (2, Some(_)) => order["account_external_id"] = json!("F-1"),
                _ => order["account_external_id"] = json!(format!("A{r}-0")),
            }
            order
        })
        .collect();
    let mut debit = json!({"gl_account_number": "6010", "debit_amount": "10.00"});
    if let Some(gl_account) = fill.gl_account {
        debit = json!({"gl_account_id": gl_account, "debit_amount": "10.00"});
    }
    let entries: Vec<Value> = (0..4)
        .map(|i| {
            json!({"external_id": format!("J{r}-{i}"), "entry_date": "2026-03-01",
                   "lines": [debit, {"gl_account_number": "1010", "credit_amount": "10.00"}]})
        })
        .collect();
    let bills: Vec<Value> = (0..4)
        .map(|i| {
            let mut bill = json!({"external_id": format!("B{r}-{i}"), "bill_date": "2026-03-01",
                                  "items": [{"amount": "100.00", "gl_account_number": "6010",
                                             "product_external_id": format!("P{r}-2")},
                                            {"amount": "5.00", "gl_account_number": "6020"}]});
            match (i, fill.vendor) {
                (1, Some(vendor)) => bill["vendor_id"] = json!(vendor),
                (2, Some(_)) => bill["vendor_external_id"] = json!("F-2"),
                _ => bill["vendor_external_id"] = json!(format!("A{r}-1")),
            }
            bill
        })
        .collect();
    // Bills 0 and 3 are the round's vendor's in every round.
    let payments: Vec<Value> = (0..2)
        .map(|i| {
            let mut applications =
                vec![json!({"bill_external_id": format!("B{r}-{}", i * 3), "amount": "10.00"})];
            if i == 1 {
                applications.push(json!({"bill_external_id": format!("B{r}-0"), "amount": "1.00"}));
            }
            json!({"external_id": format!("PAY{r}-{i}"), "vendor_external_id": format!("A{r}-1"),
                   "payment_date": "2026-03-02", "amount": "20.00", "method": "ach",
                   "applications": applications})
        })
        .collect();
    let mut chunks = vec![
        (Resource::Accounts, accounts),
        (Resource::Products, products),
        (Resource::Orders, orders),
        (Resource::JournalEntries, entries),
        (Resource::VendorBills, bills),
        (Resource::ApPayments, payments),
    ];
    if fill.bill.is_some() {
        // A payment of a bill of the fill, by id, from that bill's vendor.
        chunks.push((
            Resource::ApPayments,
            vec![
                json!({"external_id": format!("PAY{r}-fill"), "vendor_id": fill.vendor,
                        "payment_date": "2026-03-02", "amount": "1.00", "method": "check",
                        "applications": [{"bill_id": fill.bill, "amount": "1.00"}]}),
            ],
        ));
    }
    let mut seen = Vec::new();
    for (resource, records) in &chunks {
        for mode in [
            ConflictMode::Skip,
            ConflictMode::Update,
            ConflictMode::Replace,
        ] {
            let records: Vec<Value> = match mode {
                ConflictMode::Replace => records
                    .iter()
                    .take(3)
                    .map(|record| {
                        // The replaced record keeps its row, and its sku.
                        let mut record = record.clone();
                        record.as_object_mut().expect("an object").remove("sku");
                        record
                    })
                    .collect(),
                _ => records.clone(),
            };
            plans.clear();
            let tally = import(conn, tenant, *resource, mode, &records).await;
            assert_eq!(
                tally.failed, 0,
                "{resource} {mode:?} round {r}: {:?}",
                tally.errors
            );
            let taken = plans.take();
            assert!(!taken.is_empty(), "auto_explain reported no plan");
            seen.extend(taken);
        }
    }
    seen
}

async fn import(
    conn: &mut PoolConnection<Postgres>,
    tenant: Tenant,
    resource: Resource,
    conflict_mode: ConflictMode,
    records: &[Value],
) -> domain::import::Tally {
    let actor = Actor::key(Uuid::nil(), None);
    let ctx = import_context(tenant, resource, conflict_mode, &actor);
    let mut tx = conn.begin().await.expect("tx");
    let tally = import_records(&mut tx, &ctx, records, 0)
        .await
        .expect("imports");
    tx.commit().await.expect("commit");
    tally
}

/// A connection of the pool that reports the plan of every statement it
/// runs, nested ones included, with what each node really did.
async fn explained(pool: &PgPool) -> PoolConnection<Postgres> {
    let mut conn = pool.acquire().await.expect("connection");
    for statement in [
        "load 'auto_explain'",
        "set auto_explain.log_min_duration = 0",
        "set auto_explain.log_analyze = on",
        "set auto_explain.log_timing = off",
        "set auto_explain.log_format = json",
        "set auto_explain.log_nested_statements = on",
        "set auto_explain.log_level = notice",
    ] {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    conn
}

/// Writes `ROWS` rows of the tenant into every resource table and its chart:
/// with provenance `F-<n>` from the same source, document numbers `F…-<n>`,
/// lines, items and applications.
async fn fill(pool: &PgPool, tenant: Tenant) -> Fill {
    let statements = [
        "insert into products (id, entity_id, mode, title, product_type, sku, list_price,
                               external_source, external_id)
         select gen_random_uuid(), $1, $2, 'Filled ' || n, 'physical', 'FS-' || n, 1, $3, 'F-' || n
         from generate_series(1, $4) as n",
        "insert into accounts (id, entity_id, mode, account_number, name, account_type,
                               external_source, external_id)
         select gen_random_uuid(), $1, $2, 'FA-' || n, 'Filled ' || n,
                case when n % 2 = 0 then 'vendor' else 'business' end, $3, 'F-' || n
         from generate_series(1, $4) as n",
        "insert into gl_accounts (id, entity_id, mode, account_number, name, account_type,
                                  normal_balance)
         select gen_random_uuid(), $1, $2, '9' || lpad(n::text, 6, '0'), 'Filled ' || n,
                'expense', 'debit'
         from generate_series(1, $4) as n",
        "insert into orders (id, entity_id, mode, order_number, document_type, account_id,
                             order_date, subtotal, order_total, balance_due, external_source,
                             external_id)
         select gen_random_uuid(), $1, $2, 'FO-' || n, 'sales_order',
                (select id from accounts where entity_id = $1 and external_id = 'F-1'),
                '2026-01-01', 1, 1, 1, $3, 'F-' || n
         from generate_series(1, $4) as n",
        "insert into order_lines (order_id, position, product_id, quantity, sell_rate, line_total)
         select o.id, 0, (select id from products where entity_id = $1 and external_id = 'F-1'),
                1, 1, 1
         from orders o where o.entity_id = $1 and o.mode = $2 and o.external_id like 'F-%'",
        "insert into journal_entries (id, entity_id, mode, entry_number, entry_date,
                                      external_source, external_id)
         select gen_random_uuid(), $1, $2, 'FJ-' || n, '2026-01-01', $3, 'F-' || n
         from generate_series(1, $4) as n",
        "insert into journal_lines (entry_id, position, gl_account_id, debit_amount, credit_amount)
         select e.id, side, g.id, case side when 0 then 1 else 0 end,
                case side when 1 then 1 else 0 end
         from journal_entries e
         cross join generate_series(0, 1) as side
         join gl_accounts g on g.entity_id = $1 and g.mode = $2 and g.account_number = '6010'
         where e.entity_id = $1 and e.mode = $2 and e.external_id like 'F-%'",
        "insert into vendor_bills (id, entity_id, mode, bill_number, vendor_id, bill_date,
                                   subtotal, bill_total, amount_paid, balance_due,
                                   external_source, external_id)
         select gen_random_uuid(), $1, $2, 'FB-' || n, v.id, '2026-01-01', 100, 100, 1, 99, $3,
                'F-' || n
         from generate_series(1, $4) as n
         join accounts v on v.entity_id = $1 and v.external_id = 'F-2'",
        "insert into vendor_bill_items (bill_id, position, quantity, amount, gl_account_id)
         select b.id, 0, 1, 100, g.id
         from vendor_bills b
         join gl_accounts g on g.entity_id = $1 and g.mode = $2 and g.account_number = '6010'
         where b.entity_id = $1 and b.mode = $2 and b.external_id like 'F-%'",
        "insert into ap_payments (id, entity_id, mode, payment_number, vendor_id, payment_date,
                                  amount, method, external_source, external_id)
         select gen_random_uuid(), $1, $2, 'FP-' || n, v.id, '2026-01-02', 1, 'ach', $3,
                'F-' || n
         from generate_series(1, $4) as n
         join accounts v on v.entity_id = $1 and v.external_id = 'F-2'",
        "insert into ap_payment_applications (payment_id, position, bill_id, amount)
         select p.id, 0, b.id, 1
         from ap_payments p join vendor_bills b on b.entity_id = $1 and b.external_id = p.external_id
         where p.entity_id = $1 and p.mode = $2 and p.external_id like 'F-%'",
    ];
    // On a connection closed afterwards: its inserts' foreign-key checks
    // cache plans made with sequential scans on, which a later round must
    // not inherit by drawing the same connection from the pool.
    let mut filler = pool.acquire().await.expect("connection");
    let mut tx = filler.begin().await.expect("tx");
    for statement in statements {
        sqlx::query(statement)
            .bind(tenant.entity_id)
            .bind(tenant.mode.as_str())
            .bind(SOURCE)
            .bind(ROWS)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let id = |sql: &'static str| async move {
        sqlx::query_scalar::<_, Uuid>(sql)
            .bind(tenant.entity_id)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    tx.commit().await.expect("commit");
    filler.close().await.expect("closed");
    Fill {
        product: Some(
            id("select id from products where entity_id = $1 and external_id = 'F-3'").await,
        ),
        customer: Some(
            id("select id from accounts where entity_id = $1 and external_id = 'F-3'").await,
        ),
        vendor: Some(
            id("select id from accounts where entity_id = $1 and external_id = 'F-2'").await,
        ),
        bill: Some(
            id("select id from vendor_bills where entity_id = $1 and external_id = 'F-5'").await,
        ),
        gl_account: Some(
            id("select id from gl_accounts where entity_id = $1 and account_number = '9000011'")
                .await,
        ),
    }
}

/// The columns of every index of the schema, in order.
async fn index_columns(pool: &PgPool) -> HashMap<String, Vec<String>> {
    sqlx::query_as::<_, (String, Vec<String>)>(
        "select i.relname::text, array_agg(a.attname::text order by k.ord)
         from pg_index x
         join pg_class i on i.oid = x.indexrelid
         cross join unnest(x.indkey) with ordinality as k (attnum, ord)
         join pg_attribute a on a.attrelid = x.indrelid and a.attnum = k.attnum
         where i.relnamespace = 'public'::regnamespace
         group by i.relname",
    )
    .fetch_all(pool)
    .await
    .expect("index columns")
    .into_iter()
    .collect()
}

/// One statement's plan, as `auto_explain` reported it.
#[derive(Debug)]
struct Plan {
    query: String,
    plan: Value,
    scans: Vec<Scan>,
}

#[derive(Debug)]
struct Scan {
    index: String,
    condition: String,
}

/// The checks every plan must pass; `when` names the phase in failures.
fn check(plans: &[Plan], columns: &HashMap<String, Vec<String>>, when: &str) {
    for plan in plans {
        let fail = |why: String| -> ! {
            panic!(
                "{when}: {why}\nstatement: {}\nplan: {:#}",
                plan.query, plan.plan
            )
        };
        walk(&plan.plan["Plan"], &mut |node| {
            let kind = node["Node Type"].as_str().unwrap_or_default();
            if kind == "Seq Scan" {
                fail(format!(
                    "a sequential scan of {}",
                    node["Relation Name"].as_str().unwrap_or("?")
                ));
            }
            for removed in [
                "Rows Removed by Filter",
                "Rows Removed by Join Filter",
                "Rows Removed by Index Recheck",
            ] {
                if node[removed].as_i64().is_some_and(|n| n > 0) {
                    fail(format!("{removed}: {} in a {kind}", node[removed]));
                }
            }
        });
        for scan in &plan.scans {
            let Some(index_columns) = columns.get(&scan.index) else {
                fail(format!("an index the schema lacks: {}", scan.index));
            };
            // A child table's key is its parent's id and a position: its rows
            // are sought by the parent, all positions at once.
            for column in index_columns.iter().filter(|c| *c != "position") {
                let sought = [format!("({column} = "), format!(".{column} = ")]
                    .iter()
                    .any(|p| scan.condition.contains(p.as_str()));
                if !sought {
                    fail(format!(
                        "{} scanned without {column} in its condition {:?}",
                        scan.index, scan.condition
                    ));
                }
            }
        }
    }
}

fn walk(node: &Value, visit: &mut impl FnMut(&Value)) {
    visit(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, visit);
    }
}

/// The plans `auto_explain` sends as notices, which sqlx logs under the
/// `sqlx::postgres::notice` target: captured for the test's thread while the
/// guard lives.
#[derive(Clone)]
struct Plans {
    notices: Arc<Mutex<Vec<String>>>,
    _guard: Arc<tracing::subscriber::DefaultGuard>,
}

impl Plans {
    fn capture() -> Self {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let subscriber = Registry::default().with(Capture {
            notices: notices.clone(),
        });
        let guard = tracing::subscriber::set_default(subscriber);
        Self {
            notices,
            _guard: Arc::new(guard),
        }
    }

    fn clear(&self) {
        self.notices.lock().expect("notices").clear();
    }

    /// The plans reported since the last look.
    fn take(&self) -> Vec<Plan> {
        let notices = std::mem::take(&mut *self.notices.lock().expect("notices"));
        notices
            .iter()
            .filter_map(|notice| notice.find('{').map(|at| &notice[at..]))
            .map(|json| {
                let plan: Value = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("an auto_explain plan: {e}: {json}"));
                let mut scans = Vec::new();
                walk(&plan["Plan"], &mut |node| {
                    if let Some(index) = node["Index Name"].as_str() {
                        scans.push(Scan {
                            index: index.to_owned(),
                            condition: node["Index Cond"].as_str().unwrap_or_default().to_owned(),
                        });
                    }
                });
                Plan {
                    query: plan["Query Text"].as_str().unwrap_or_default().to_owned(),
                    plan,
                    scans,
                }
            })
            .collect()
    }
}

struct Capture {
    notices: Arc<Mutex<Vec<String>>>,
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        struct Message(Option<String>);
        impl Visit for Message {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_owned());
                }
            }
            // sqlx records the message as text; nothing else is a plan.
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(message) = message.0 {
            self.notices.lock().expect("notices").push(message);
        }
    }
}
