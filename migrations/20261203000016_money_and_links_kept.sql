-- What the vendor's pages send that was dropped: a line's cost rate, a bill
-- item's tax, and per job the fields no handler reads (reported to the
-- client as `ignored_fields`) and whether such fields fail their record
-- (`strict`).

-- A line's unit cost: what prices a purchase order's line (the vendor's
-- purchase-to-pay guide sends `cost_rate`), and the cost of a sales line.
alter table order_lines add column cost_rate numeric(19, 4) check (cost_rate >= 0);

-- A bill item's tax as a percentage of its amount, and the tax it makes.
alter table vendor_bill_items
    add column tax_rate numeric(9, 4) check (tax_rate >= 0 and tax_rate <= 100),
    add column tax_amount numeric(19, 4) not null default 0 check (tax_amount >= 0);
alter table vendor_bills
    add column subtotal numeric(19, 4),
    add column tax_total numeric(19, 4) not null default 0;
update vendor_bills set subtotal = bill_total;
alter table vendor_bills alter column subtotal set not null;

alter table migration_jobs
    add column strict boolean not null default false,
    add column ignored_fields jsonb not null default '[]';

-- A bill's tax is part of what each item costs: it is debited with the item,
-- and payables are credited with the bill's total, tax included.
create or replace view gl_postings as
    select e.entity_id, e.mode, l.gl_account_id, e.entry_date as posting_date,
           l.debit_amount as debit, l.credit_amount as credit, e.external_source
    from journal_entries e join journal_lines l on l.entry_id = e.id
    union all
    select b.entity_id, b.mode, i.gl_account_id, b.bill_date, i.amount + i.tax_amount, 0,
           b.external_source
    from vendor_bills b join vendor_bill_items i on i.bill_id = b.id
    union all
    select b.entity_id, b.mode, g.id, b.bill_date, 0, b.bill_total, b.external_source
    from vendor_bills b
    join gl_accounts g
        on g.entity_id = b.entity_id and g.mode = b.mode and g.system_role = 'accounts_payable'
    union all
    select p.entity_id, p.mode, g.id, p.payment_date, p.amount, 0, p.external_source
    from ap_payments p
    join gl_accounts g
        on g.entity_id = p.entity_id and g.mode = p.mode and g.system_role = 'accounts_payable'
    union all
    select p.entity_id, p.mode, g.id, p.payment_date, 0, p.amount, p.external_source
    from ap_payments p
    join gl_accounts g
        on g.entity_id = p.entity_id and g.mode = p.mode and g.system_role = 'cash';

-- A purchase order's line need not have a sell rate: it is priced at cost.
alter table order_lines alter column sell_rate drop not null;
