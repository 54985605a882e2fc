//! The domain's own tests, against the real Postgres (a database per test,
//! from `testkit`): the batch handlers against the same records applied one
//! at a time, the plans of the import's statements, the parsers against the
//! fields they declare, and the layering of the crate's modules.

mod batch_equivalence;
mod layering;
mod plans;
mod spec;
