-- Entities (the companies whose books are loaded) and the API keys issued to them.

create table entities (
    id uuid primary key,
    name text not null,
    -- Short public code embedded in the entity's API keys (ark_test_ent_<code>_...).
    code text not null unique,
    created_at timestamptz not null default now()
);

create table api_keys (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    -- The first characters of the key, safe to show in listings.
    prefix text not null,
    -- Hex SHA-256 of the whole key; the key itself is never stored.
    key_hash text not null unique,
    scopes text[] not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

create index api_keys_entity_idx on api_keys (entity_id);
