-- The audit log: who did what, when, under which request. Append-only: rows
-- can be added, never changed or removed.

create table audit_log (
    id bigserial primary key,
    occurred_at timestamptz not null default now(),
    -- `key:<api key id>` for requests and jobs, `arcusctl:<user>` for operators.
    actor text not null,
    action text not null,
    entity_id uuid references entities (id),
    details jsonb not null default '{}',
    request_id text
);

create index audit_log_entity_idx on audit_log (entity_id, occurred_at);

create function audit_log_is_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_log is append-only';
end;
$$;

create trigger audit_log_append_only
    before update or delete or truncate on audit_log
    for each statement execute function audit_log_is_append_only();

-- The key that submitted a job, so what its records do is attributed to it.
alter table migration_jobs add column submitted_by uuid references api_keys (id);
