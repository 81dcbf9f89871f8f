//! o11y-provisioner's engine: the input contract and its validation, the IAM policy documents,
//! the IRSA trust merge, the Helm values rendering, the stable error names, and one idempotent
//! step per runbook section. Every Lambda in `functions/` is a thin wrapper over one step here.

pub mod aws;
pub mod engine;
pub mod http;
pub mod error;
pub mod input;
pub mod lambda;
pub mod names;
pub mod policy;
pub mod poll;
pub mod record;
pub mod render;
pub mod state;
pub mod steps;
pub mod trust;
pub mod validate;

pub use error::{Error, Result};
