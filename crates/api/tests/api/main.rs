//! End-to-end tests of the API and workers against real Postgres and RabbitMQ.

mod auth;
mod bad_input;
mod conflict_modes;
mod console;
mod contract;
mod dry_run;
mod health;
mod helpers;
mod idempotency;
mod importer;
mod job_errors;
mod jobs;
mod operations;
mod products;
mod reconciliation;
mod records;
mod recovery;
mod resources;
mod security;
mod webhooks;
mod workers;
