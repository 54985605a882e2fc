//! The migration-job store, one module per concern: what a job is
//! (`model`), submitting one (`submit`), reading them (`read`), and the
//! worker's side of a job's life (`lease`). The modules depend on `model`,
//! and `lease` on `submit`, never the other way.

mod lease;
pub(crate) mod model;
mod read;
mod submit;

pub use lease::{
    ClaimResult, ClaimedJob, FencedError, checkpoint, claim, finish, hand_on, release, renew, sweep,
};
pub use model::{
    Job, JobMessage, JobStatus, StoredRecords, UnreadableRecords, format_timestamp, stored_records,
};
pub use read::{
    ErrorPage, FailedRecord, ListError, ListFilter, Page, errors_page, failed_records, get, list,
};
pub use submit::{Idempotency, NewJob, Submission, submit};
