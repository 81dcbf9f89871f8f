//! The AWS adapters: the service clients, SDK error mapping, SSM parameters, plain HTTPS, the
//! Grafana HTTP API, AMP's remote write and query, and starting executions. They depend only on
//! [`crate::domain`]: never on the step context, a step or an entry point.

pub mod clients;
pub mod grafana_http;
pub mod http;
pub mod quotas;
pub mod remote_write;
pub mod sdk;
pub mod sfn;
pub mod ssm;

pub use clients::Clients;
