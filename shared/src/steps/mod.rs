//! One idempotent async function per runbook section. Each takes the [`Ctx`] (clients, the
//! validated deployment, and the write gate) and the [`crate::state::ProvisionState`] so far, and
//! returns its own typed output. Every AWS write goes through the gate ([`Ctx::write`]): when
//! planning, the write is recorded as a [`crate::state::PlannedChange`] instead of made, so `plan`
//! is exactly `apply` without its writes.

pub use crate::ctx::{session_name, Ctx, PlanLog, KNOWN_AFTER_APPLY};
pub use crate::state::PlannedChange;

pub mod amp_workspace;
pub mod claims;
pub mod datasource;
pub mod grafana_access;
pub mod grafana_role;
pub mod grafana_workspace;
pub mod iam_util;
pub mod irsa_trust;
pub mod opt_in;
pub mod preflight;
pub mod publish;
pub mod verify;
pub mod write_policy;
