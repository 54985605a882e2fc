//! `arcusctl` as a library: the file importer, which the end-to-end tests also
//! run against the real API.

pub mod import;
