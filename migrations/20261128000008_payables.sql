-- Vendor bills and the AP payments applied to them. A bill's balance can never
-- go below zero, whatever two writers do at once: payments lock the bill rows
-- they apply to, and the check constraint stands behind that.

create table vendor_bills (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    bill_number text not null,
    vendor_id uuid not null references accounts (id),
    bill_date date not null,
    due_date date,
    vendor_invoice_number text,
    notes text,
    bill_total numeric(19, 4) not null,
    amount_paid numeric(19, 4) not null default 0,
    balance_due numeric(19, 4) not null,
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint vendor_bills_number_key unique (entity_id, mode, bill_number),
    constraint vendor_bills_provenance_key unique (entity_id, mode, external_source, external_id),
    constraint vendor_bills_provenance_pair check ((external_source is null) = (external_id is null)),
    constraint vendor_bills_balance check (
        amount_paid >= 0 and balance_due >= 0 and balance_due = bill_total - amount_paid
    )
);

create index vendor_bills_vendor_idx on vendor_bills (vendor_id);

create table vendor_bill_items (
    bill_id uuid not null references vendor_bills (id) on delete cascade,
    position integer not null,
    description text,
    quantity numeric(19, 4) not null check (quantity > 0),
    -- Absent when the item was given as an amount only.
    unit_cost numeric(19, 4),
    amount numeric(19, 4) not null check (amount >= 0),
    product_id uuid references products (id),
    gl_account_id uuid not null references gl_accounts (id),
    primary key (bill_id, position)
);

create table ap_payments (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    payment_number text not null,
    vendor_id uuid not null references accounts (id),
    payment_date date not null,
    amount numeric(19, 4) not null check (amount > 0),
    method text not null check (method in ('check', 'ach', 'wire', 'credit_card', 'cash', 'other')),
    reference text,
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint ap_payments_number_key unique (entity_id, mode, payment_number),
    constraint ap_payments_provenance_key unique (entity_id, mode, external_source, external_id),
    constraint ap_payments_provenance_pair check ((external_source is null) = (external_id is null))
);

create table ap_payment_applications (
    payment_id uuid not null references ap_payments (id) on delete cascade,
    position integer not null,
    bill_id uuid not null references vendor_bills (id),
    amount numeric(19, 4) not null check (amount > 0),
    primary key (payment_id, position)
);

create index ap_payment_applications_bill_idx on ap_payment_applications (bill_id);

-- Every posting to the general ledger, from whichever document made it: the
-- journal lines themselves, a bill's items (debit) against payables (credit),
-- and a payment against payables (debit) and cash (credit). A view, so the
-- ledger can never disagree with the documents.
create view gl_postings as
    select e.entity_id, e.mode, l.gl_account_id, e.entry_date as posting_date,
           l.debit_amount as debit, l.credit_amount as credit, e.external_source
    from journal_entries e join journal_lines l on l.entry_id = e.id
    union all
    select b.entity_id, b.mode, i.gl_account_id, b.bill_date, i.amount, 0, b.external_source
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
