-- Journal entries and their lines. Every entry balances (debits = credits),
-- which the canonical handler checks before writing.

create table journal_entries (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    entry_number text not null,
    entry_date date not null,
    description text,
    -- Set when the entry was posted into a closed period on purpose.
    bypassed_period_check boolean not null default false,
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint journal_entries_number_key unique (entity_id, mode, entry_number),
    constraint journal_entries_provenance_key unique (entity_id, mode, external_source, external_id),
    constraint journal_entries_provenance_pair check ((external_source is null) = (external_id is null))
);

create table journal_lines (
    entry_id uuid not null references journal_entries (id) on delete cascade,
    position integer not null,
    gl_account_id uuid not null references gl_accounts (id),
    debit_amount numeric(19, 4) not null default 0 check (debit_amount >= 0),
    credit_amount numeric(19, 4) not null default 0 check (credit_amount >= 0),
    description text,
    primary key (entry_id, position),
    constraint journal_lines_one_side check ((debit_amount > 0) <> (credit_amount > 0))
);

create index journal_lines_account_idx on journal_lines (gl_account_id);
