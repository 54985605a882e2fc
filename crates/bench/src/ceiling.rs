//! The ceiling: what Postgres itself takes to load the same records into the
//! service's own tables, with their constraints and indexes, by the fastest
//! path there is: COPY into a temporary staging table, then one
//! `INSERT ... SELECT` per real table, in one transaction.
//!
//! The rows are the ones the service writes (same columns, provenance, order
//! numbers, totals, references resolved by external id in the database, and
//! the document sequence moved on), so that the end-to-end rate divided by
//! this one says what the service's own machinery costs; `compare` proves it
//! after each pass. The staging tables are `on commit drop`: made inside the
//! transaction, outside the timing.
//!
//! This writes the resource tables without the canonical handlers, which only
//! a benchmark on its own database may do.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::records::{self, LINES_PER_ORDER, ORDER_CUSTOMERS, ORDER_PRODUCTS, SOURCE};

/// Every row of the bench is in test mode: its keys are test keys.
const MODE: &str = "test";
/// COPY data is sent in pieces of about this size.
const COPY_PIECE: usize = 1 << 20;

/// Loads products 1..=`count` into `entity`; returns the time from the start
/// of the COPY to the commit.
pub async fn load_products(
    conn: &mut PgConnection,
    entity: Uuid,
    count: usize,
) -> anyhow::Result<Duration> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "create temp table stage_products (
             id uuid, external_id text, title text, product_type text, sku text,
             list_price numeric, cost numeric
         ) on commit drop",
    )
    .execute(&mut *tx)
    .await?;
    let started = Instant::now();
    copy(
        &mut tx,
        "copy stage_products from stdin",
        1..=count,
        |i, out| {
            records::product(i).write_copy_row(Uuid::now_v7(), out);
        },
    )
    .await?;
    let inserted = sqlx::query(
        "insert into products
             (id, entity_id, mode, title, product_type, sku, list_price, cost,
              external_source, external_id)
         select id, $1, $2, title, product_type, sku, list_price, cost, $3, external_id
         from stage_products",
    )
    .bind(entity)
    .bind(MODE)
    .bind(SOURCE)
    .execute(&mut *tx)
    .await
    .context("inserting the products")?
    .rows_affected();
    tx.commit().await?;
    let elapsed = started.elapsed();
    ensure!(
        inserted == count as u64,
        "{inserted} of {count} products inserted"
    );
    Ok(elapsed)
}

/// Loads orders 1..=`count` (numbered `SO-00001` on) with their lines into
/// `entity`, whose customers and products must be loaded (`load_order_parents`);
/// returns the time from the start of the first COPY to the commit.
pub async fn load_orders(
    conn: &mut PgConnection,
    entity: Uuid,
    count: usize,
) -> anyhow::Result<Duration> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "create temp table stage_orders (
             id uuid, order_number text, external_id text, account_external_id text,
             order_date date, total numeric
         ) on commit drop",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "create temp table stage_order_lines (
             order_id uuid, position integer, product_external_id text, quantity integer,
             sell_rate numeric, line_total numeric
         ) on commit drop",
    )
    .execute(&mut *tx)
    .await?;
    let started = Instant::now();
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    copy(
        &mut tx,
        "copy stage_orders from stdin",
        1..=count,
        |i, out| {
            records::order(i).write_copy_row(ids[i - 1], i, out);
        },
    )
    .await?;
    copy(
        &mut tx,
        "copy stage_order_lines from stdin",
        1..=count,
        |i, out| records::order(i).write_line_rows(ids[i - 1], out),
    )
    .await?;
    // References are resolved by external id here, as the service resolves
    // them: a join against the provenance key's index.
    let orders = sqlx::query(
        "insert into orders
             (id, entity_id, mode, order_number, document_type, account_id, order_date,
              subtotal, order_total, balance_due, external_source, external_id)
         select s.id, $1, $2, s.order_number, 'sales_order', a.id, s.order_date,
                s.total, s.total, s.total, $3, s.external_id
         from stage_orders s
         join accounts a on a.entity_id = $1 and a.mode = $2
             and a.external_source = $3 and a.external_id = s.account_external_id",
    )
    .bind(entity)
    .bind(MODE)
    .bind(SOURCE)
    .execute(&mut *tx)
    .await
    .context("inserting the orders")?
    .rows_affected();
    let lines = sqlx::query(
        "insert into order_lines (order_id, position, product_id, quantity, sell_rate, line_total)
         select l.order_id, l.position, p.id, l.quantity, l.sell_rate, l.line_total
         from stage_order_lines l
         join products p on p.entity_id = $1 and p.mode = $2
             and p.external_source = $3 and p.external_id = l.product_external_id",
    )
    .bind(entity)
    .bind(MODE)
    .bind(SOURCE)
    .execute(&mut *tx)
    .await
    .context("inserting the order lines")?
    .rows_affected();
    set_sequence(&mut tx, entity, "SO", count).await?;
    tx.commit().await?;
    let elapsed = started.elapsed();
    ensure!(
        orders == count as u64,
        "{orders} of {count} orders inserted"
    );
    ensure!(
        lines == (count * LINES_PER_ORDER) as u64,
        "{lines} of {} order lines inserted",
        count * LINES_PER_ORDER
    );
    Ok(elapsed)
}

/// The customers and products the orders name, loaded into `entity` before
/// an orders pass (outside any timing), as a migration loads parents first.
pub async fn load_order_parents(conn: &mut PgConnection, entity: Uuid) -> anyhow::Result<()> {
    load_products(conn, entity, ORDER_PRODUCTS).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "create temp table stage_accounts (
             id uuid, external_id text, name text, account_number text
         ) on commit drop",
    )
    .execute(&mut *tx)
    .await?;
    copy(
        &mut tx,
        "copy stage_accounts from stdin",
        1..=ORDER_CUSTOMERS,
        |k, out| records::customer(k).write_copy_row(Uuid::now_v7(), out),
    )
    .await?;
    sqlx::query(
        "insert into accounts
             (id, entity_id, mode, account_number, name, account_type, external_source,
              external_id)
         select id, $1, $2, account_number, name, 'business', $3, external_id
         from stage_accounts",
    )
    .bind(entity)
    .bind(MODE)
    .bind(SOURCE)
    .execute(&mut *tx)
    .await
    .context("inserting the customers")?;
    set_sequence(&mut tx, entity, "CUST", ORDER_CUSTOMERS).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves an entity's document sequence to `last`, as `last` creations by the
/// service would have.
async fn set_sequence(
    conn: &mut PgConnection,
    entity: Uuid,
    kind: &str,
    last: usize,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into document_sequences (entity_id, mode, kind, last_value)
         values ($1, $2, $3, $4)
         on conflict (entity_id, mode, kind) do update set last_value = excluded.last_value",
    )
    .bind(entity)
    .bind(MODE)
    .bind(kind)
    .bind(i32::try_from(last).context("a sequence fits an integer")?)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs `statement` (a `COPY ... FROM STDIN` in text format) with a row (or
/// rows) per item, written by `row`, streamed in pieces: the whole of a
/// million orders is never in memory at once.
async fn copy<I>(
    conn: &mut PgConnection,
    statement: &str,
    items: I,
    mut row: impl FnMut(I::Item, &mut String),
) -> anyhow::Result<()>
where
    I: IntoIterator,
{
    let mut sink = conn.copy_in_raw(statement).await?;
    let mut piece = String::with_capacity(COPY_PIECE + 4096);
    for item in items {
        row(item, &mut piece);
        if piece.len() >= COPY_PIECE {
            sink.send(piece.as_bytes()).await?;
            piece.clear();
        }
    }
    if !piece.is_empty() {
        sink.send(piece.as_bytes()).await?;
    }
    sink.finish()
        .await
        .with_context(|| format!("running {statement}"))?;
    Ok(())
}

/// The rows of the resource's table, of every entity.
pub async fn rows(conn: &mut PgConnection, resource: records::Resource) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar(&format!("select count(*) from {}", resource.name()))
        .fetch_one(conn)
        .await
        .context("counting rows")?;
    Ok(u64::try_from(count)?)
}

/// Rows that differ between the entity the ceiling loaded and one the
/// service loaded, as a multiset difference both ways, for the columns the
/// two paths must agree on: everything but ids, timestamps and the entity.
/// Order numbers are compared as a set: concurrent jobs hand them out in
/// commit order, not in external-id order.
pub async fn differences(
    conn: &mut PgConnection,
    resource: records::Resource,
    ceiling: Uuid,
    service: Uuid,
) -> anyhow::Result<i64> {
    let queries: &[&str] = match resource {
        records::Resource::Products => &["select title, product_type, sku, description, \
             list_price, cost, parent_product_id, external_source, external_id \
             from products where entity_id = $E"],
        records::Resource::Orders => &[
            "select o.document_type, a.external_id as account, o.order_date, o.notes, \
             o.subtotal, o.order_total, o.balance_due, o.external_source, o.external_id \
             from orders o join accounts a on a.id = o.account_id where o.entity_id = $E",
            "select order_number from orders where entity_id = $E",
            "select o.external_id as order_ext, l.position, p.external_id as product_ext, \
             l.quantity, l.sell_rate, l.line_total \
             from order_lines l join orders o on o.id = l.order_id \
             join products p on p.id = l.product_id where o.entity_id = $E",
            "select kind, last_value from document_sequences where entity_id = $E",
        ],
    };
    let mut differing = 0;
    for query in queries {
        let a = query.replace("$E", "$1");
        let b = query.replace("$E", "$2");
        let count: i64 = sqlx::query_scalar(&format!(
            "with a as ({a}), b as ({b})
             select (select count(*) from (select * from a except all select * from b) x)
                  + (select count(*) from (select * from b except all select * from a) y)"
        ))
        .bind(ceiling)
        .bind(service)
        .fetch_one(&mut *conn)
        .await
        .context("comparing the ceiling's rows with the service's")?;
        differing += count;
    }
    Ok(differing)
}
