-- Bulk-import jobs, their records, their per-record errors, the outbox that
-- hands them to RabbitMQ, and the idempotency keys of their submissions.

create table migration_jobs (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    resource text not null,
    status text not null default 'pending'
        check (status in ('pending', 'running', 'completed', 'partial', 'failed')),
    conflict_mode text not null check (conflict_mode in ('skip', 'update', 'replace', 'error')),
    external_source text not null,
    total_records integer not null check (total_records between 1 and 1000),
    processed_records integer not null default 0,
    succeeded_records integer not null default 0,
    failed_records integer not null default 0,
    -- Checkpoint: index of the first record not yet committed.
    next_index integer not null default 0,
    -- How many times a worker has claimed the job.
    attempts integer not null default 0,
    -- The claim of the worker processing the job; every write of that worker is
    -- fenced on lease_token, so a worker that lost its claim cannot write.
    -- lease_owner stays set once the job ends: it names the worker that ended it.
    lease_token uuid,
    lease_owner text,
    lease_expires_at timestamptz,
    request_id text,
    started_at timestamptz,
    completed_at timestamptz,
    created_at timestamptz not null default now(),
    -- The invariant clients rely on, enforced where it cannot be bypassed.
    constraint migration_jobs_counts check (processed_records = succeeded_records + failed_records),
    constraint migration_jobs_progress check (processed_records <= total_records)
);

create index migration_jobs_listing_idx on migration_jobs (entity_id, mode, created_at desc, id desc);

-- The submitted records, one row per job: a single jsonb array is written in one
-- statement when the job is accepted and read once by the worker.
create table migration_job_records (
    job_id uuid primary key references migration_jobs (id) on delete cascade,
    records jsonb not null
);

create table migration_job_errors (
    job_id uuid not null references migration_jobs (id) on delete cascade,
    index integer not null,
    external_id text,
    code text not null,
    message text not null,
    param text,
    hint text,
    primary key (job_id, index)
);

-- Transactional outbox: written in the job's own transaction, deleted once
-- RabbitMQ has confirmed the message, so a committed job is always published.
create table job_outbox (
    id bigserial primary key,
    job_id uuid not null references migration_jobs (id) on delete cascade,
    routing_key text not null,
    payload jsonb not null,
    created_at timestamptz not null default now()
);

create table idempotency_keys (
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    key text not null,
    request_hash text not null,
    response_status integer,
    response_body jsonb,
    created_at timestamptz not null default now(),
    primary key (entity_id, mode, key)
);
