-- Each look-up of the import can use exactly one index of its table, whatever
-- the planner knows (`import::plan_without_statistics`). Postgres can scan a
-- b-tree index on any of its columns, so any index holding `entity_id` and
-- `mode` could serve a look-up that gives the tenant; without statistics it
-- looks as cheap as the index that holds the key, and a look-up could then
-- read a whole entity for every key. A partial index serves only the queries
-- that imply its predicate, so the indexes no look-up needs are made partial
-- on a predicate no look-up states.

-- Document numbers are never looked up: their unique keys cover every row
-- (the numbers are not null), but only a query that speaks of the number can
-- use them.
alter table accounts drop constraint accounts_number_key;
create unique index accounts_number_key on accounts (entity_id, mode, account_number)
    where account_number is not null;
alter table orders drop constraint orders_number_key;
create unique index orders_number_key on orders (entity_id, mode, order_number)
    where order_number is not null;
alter table journal_entries drop constraint journal_entries_number_key;
create unique index journal_entries_number_key on journal_entries (entity_id, mode, entry_number)
    where entry_number is not null;
alter table vendor_bills drop constraint vendor_bills_number_key;
create unique index vendor_bills_number_key on vendor_bills (entity_id, mode, bill_number)
    where bill_number is not null;
alter table ap_payments drop constraint ap_payments_number_key;
create unique index ap_payments_number_key on ap_payments (entity_id, mode, payment_number)
    where payment_number is not null;

-- Products are looked up by provenance and by sku. Variants never carry
-- provenance, so the provenance key covers top-level products only: a look-up
-- by sku (which does not say `parent_product_id is null`) cannot use it, while
-- a look-up by provenance and the reads of products, which list top-level
-- products, still can.
alter table products drop constraint products_provenance_key;
create unique index products_provenance_key on products
    (entity_id, mode, external_source, external_id) where parent_product_id is null;

-- An update of a product with variants deletes its old variants, and the
-- foreign key from bill items checks each deleted product: without an index
-- that check read every bill item of every entity.
create index vendor_bill_items_product_idx on vendor_bill_items (product_id)
    where product_id is not null;
