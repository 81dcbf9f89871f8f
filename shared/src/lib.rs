//! o11y-provisioner's engine, in layers that depend only downward:
//!
//! 1. [`domain`]: the input contract and its validation, names, errors, the Helm values
//!    rendering, the IAM documents (no AWS call);
//! 2. [`aws`]: the adapters (clients, SDK error mapping, SSM, HTTPS, the Grafana HTTP API,
//!    remote write, starting executions);
//! 3. [`state`]: every step's output type, the contract between the state machine's states;
//! 4. [`ctx`]: the step context with its one write gate, and the deployment's record and lease;
//! 5. [`steps`]: one idempotent step per runbook section;
//! 6. the entry points: [`engine`] (dispatch and the in-process runner), [`lambda`], [`cfn`],
//!    [`vending`].
//!
//! `tests/layers.rs` checks the direction. The re-exports below keep the crate's public paths
//! (`o11y_shared::input`, `o11y_shared::policy`, ...) stable for the binaries and the tests.

/// A closed set's spelling in the JSON contract, in one place: `as_str` (the same text serde
/// writes, checked by each module's tests), `Display`, and comparison with that text.
macro_rules! spelled {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The spelling in the JSON contract.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            /// Every member.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

pub mod aws;
pub mod cfn;
pub mod ctx;
pub mod domain;
pub mod engine;
pub mod lambda;
pub mod state;
pub mod steps;
pub mod vending;

pub use aws::{grafana_http as grafana_api, http, remote_write, sfn as start};
pub use ctx::{lease, record};
pub use domain::iam::{policy, trust};
pub use domain::{error, input, names, poll, render, schema, validate};
pub use error::{Error, Result};
