-- A job made by retrying another job's failed records names the job it
-- retries, so a user can follow a record from its first attempt to its last.
alter table migration_jobs add column retry_of uuid references migration_jobs (id);
