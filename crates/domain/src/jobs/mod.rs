//! The migration-job store, one module per concern: what a job is
//! (`model`), submitting one (`submit`), reading them (`read`), and the
//! worker's side of a job's life (`lease`). The modules depend on `model`,
//! and `lease` on `submit`, never the other way.

mod lease;
pub(crate) mod model;
mod read;
mod submit;

pub use lease::*;
pub use model::{
    Job, JobMessage, JobStatus, StoredRecords, UnreadableRecords, format_timestamp, stored_records,
};
pub use read::*;
pub use submit::*;
