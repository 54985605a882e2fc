-- Webhooks: the endpoints an entity registers to hear of its migration jobs'
-- terminal states, and one delivery per event and endpoint, which workers
-- send and retry with backoff until the endpoint answers 2xx or the attempts
-- run out.

create table webhook_endpoints (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    url text not null check (length(url) <= 2048),
    -- The signing secret, kept in the clear (null once the endpoint is
    -- deleted). Unlike an API key, of which only a hash is stored, it cannot
    -- be hashed: every delivery is signed with it (HMAC-SHA256), and the
    -- receiver checks the signature with its own copy. It is shown once, when
    -- the endpoint is created.
    secret text,
    -- The event types the endpoint receives.
    events text[] not null check (
        cardinality(events) > 0
        and events <@ array['migration_job.completed', 'migration_job.partial',
                            'migration_job.failed']
    ),
    created_at timestamptz not null default now(),
    -- A deleted endpoint is kept, so its deliveries still name it, but it
    -- receives nothing more.
    deleted_at timestamptz,
    constraint webhook_endpoints_secret_while_active
        check ((deleted_at is null) = (secret is not null))
);

-- What a job's end looks up: the tenant's live endpoints.
create index webhook_endpoints_tenant_idx on webhook_endpoints (entity_id, mode)
    where deleted_at is null;

create table webhook_deliveries (
    -- The event's id, in its body and the Arcus-Event-Id header: the same on
    -- every attempt, so a receiver can drop the duplicates retries make.
    id uuid primary key,
    endpoint_id uuid not null references webhook_endpoints (id),
    job_id uuid not null references migration_jobs (id) on delete cascade,
    event_type text not null check (
        event_type in ('migration_job.completed', 'migration_job.partial',
                       'migration_job.failed')
    ),
    -- The event body, frozen when the job ended: a retry sends what the first
    -- attempt sent, not the job as it is by then.
    payload jsonb not null,
    status text not null default 'pending'
        check (status in ('pending', 'delivered', 'failed')),
    -- Attempts started. A worker counts its attempt when it claims the
    -- delivery, and moves next_attempt_at past the attempt's end (a lease):
    -- if it dies mid-attempt the delivery comes due again, and its late
    -- answer, fenced on attempts, is ignored once another worker has claimed it.
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- The last attempt's HTTP status (null when it got no answer) and what
    -- went wrong with it.
    last_status integer,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz not null default now()
);

-- What the workers poll: pending deliveries by when they are due.
create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at)
    where status = 'pending';
-- An endpoint's deliveries, newest first (their ids are UUIDv7, time-ordered).
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, id desc);
