//! The domain's own tests, against the real Postgres (a database per test,
//! from `testkit`): the batch handlers against the same records applied one
//! at a time, the plans of the import's statements, the parsers against the
//! fields they declare, and the layering of the crate's modules.

mod batch_equivalence;
mod layering;
mod plans;
mod spec;

use domain::audit::Actor;
use domain::import::ImportContext;
use domain::{ConflictMode, Resource, Tenant};

/// The source the tests import from.
const SOURCE: &str = "legacy";

/// An import of `resource` from [`SOURCE`] by `actor`, allowed to post into
/// closed periods as an admin key is.
fn import_context(
    tenant: Tenant,
    resource: Resource,
    conflict_mode: ConflictMode,
    actor: &Actor,
) -> ImportContext<'_> {
    ImportContext {
        tenant,
        resource,
        external_source: SOURCE,
        conflict_mode,
        actor,
        may_bypass_period_check: true,
        strict: false,
    }
}
