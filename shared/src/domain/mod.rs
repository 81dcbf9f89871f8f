//! The pure core: the input contract and its validation, names, errors, the Helm values
//! rendering, the IAM documents, the wait schedule and the message text helpers. No AWS call and
//! no I/O: every layer above depends on it, it depends on none of them.

pub mod error;
pub mod iam;
pub mod input;
pub mod names;
pub mod poll;
pub mod render;
pub mod schema;
pub mod scope;
pub mod text;
pub mod validate;
