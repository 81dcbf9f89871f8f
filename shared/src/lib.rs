//! o11y-provisioner's engine: the input contract and its validation, the IAM policy documents,
//! the IRSA trust merge, the Helm values rendering, the stable error names, and one idempotent
//! step per runbook section. Every Lambda in `functions/` is a thin wrapper over one step here.

pub mod aws;
pub mod cfn;
pub mod engine;
pub mod error;
pub mod grafana_api;
pub mod http;
pub mod input;
pub mod lambda;
pub mod lease;
pub mod names;
pub mod policy;
pub mod poll;
pub mod record;
pub mod remote_write;
pub mod render;
pub mod schema;
pub mod start;
pub mod state;
pub mod steps;
pub mod trust;
pub mod validate;
pub mod vending;

pub use error::{Error, Result};
