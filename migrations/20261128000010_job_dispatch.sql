-- What the sweeper needs to find a job whose message was lost: when a message
-- for the job was last queued, how many times it was, and the last error a
-- worker met on it (reported when the job is given up).
alter table migration_jobs
    add column dispatched_at timestamptz not null default now(),
    add column dispatches integer not null default 1,
    add column last_error text;

create index migration_jobs_unfinished_idx on migration_jobs (dispatched_at)
    where status in ('pending', 'running');
