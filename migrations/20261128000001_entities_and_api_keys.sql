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
    -- The public part of the key a request is looked up by.
    lookup_id text not null unique,
    -- The key up to and including its lookup id: safe to show in listings.
    prefix text not null,
    -- Hex HMAC-SHA256 of the whole key under the server's key secret; the key
    -- itself is never stored, and the hash is useless without the secret.
    key_hash text not null,
    scopes text[] not null,
    -- Rate-limit tier of live keys; test keys have the test tier.
    tier text not null check (tier in ('test', 'standard', 'elevated')),
    -- CIDRs the key may be used from; null means anywhere.
    allowed_ips text[],
    expires_at timestamptz,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    constraint api_keys_tier_matches_mode check ((mode = 'test') = (tier = 'test'))
);

create index api_keys_entity_idx on api_keys (entity_id);
