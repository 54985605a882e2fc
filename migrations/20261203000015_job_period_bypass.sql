-- Whether the key that submitted a job may post journal entries into a closed
-- period with `bypass_period_check`: decided by the API's authorization layer
-- at submission and only read by the worker. Every job submitted so far was
-- submitted with `migration:write`, which allows it.
alter table migration_jobs
    add column may_bypass_period_check boolean not null default true;
alter table migration_jobs
    alter column may_bypass_period_check drop default;
