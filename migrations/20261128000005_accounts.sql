-- Accounts: customers (business, individual, lead) and vendors, with addresses.

create table accounts (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    account_number text not null,
    name text not null,
    account_type text not null check (account_type in ('business', 'individual', 'lead', 'vendor')),
    email text,
    phone text,
    credit_limit numeric(19, 4),
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint accounts_number_key unique (entity_id, mode, account_number),
    constraint accounts_provenance_key unique (entity_id, mode, external_source, external_id),
    constraint accounts_provenance_pair check ((external_source is null) = (external_id is null))
);

create table account_addresses (
    account_id uuid not null references accounts (id) on delete cascade,
    position integer not null,
    address_type text not null check (address_type in ('billing', 'shipping')),
    line1 text,
    line2 text,
    city text,
    state text,
    zip text,
    country text,
    is_default_billing boolean not null default false,
    is_default_shipping boolean not null default false,
    primary key (account_id, position)
);
