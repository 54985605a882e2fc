-- The general ledger side: each entity's chart of accounts (per mode), the date
-- through which its books are closed, and per-entity document numbering.

create table gl_accounts (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    account_number text not null,
    name text not null,
    account_type text not null
        check (account_type in ('asset', 'liability', 'equity', 'revenue', 'expense', 'cogs')),
    normal_balance text not null check (normal_balance in ('debit', 'credit')),
    parent_id uuid references gl_accounts (id),
    is_header boolean not null default false,
    is_active boolean not null default true,
    -- The account the service posts to on its own (payables, cash), if any.
    system_role text check (system_role in ('cash', 'accounts_receivable', 'accounts_payable')),
    created_at timestamptz not null default now(),
    constraint gl_accounts_number_key unique (entity_id, mode, account_number)
);

create unique index gl_accounts_role_key on gl_accounts (entity_id, mode, system_role)
    where system_role is not null;

-- Entries dated on or before closed_through fall in a closed period.
create table period_closes (
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    closed_through date not null,
    closed_at timestamptz not null default now(),
    primary key (entity_id, mode)
);

-- The last number assigned per kind of document (CUST, VEND, SO, BILL, JE, ...).
-- Taken in the writer's transaction, so a rolled-back record leaves no gap.
create table document_sequences (
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    kind text not null,
    last_value integer not null,
    primary key (entity_id, mode, kind)
);
