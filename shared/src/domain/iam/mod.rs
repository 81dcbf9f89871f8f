//! IAM policy documents: reading them ([`doc`]: statements, lists, the one wildcard matcher),
//! evaluating them ([`eval`]: the one condition evaluator, and the permission-policy evaluation
//! verify uses), the documents we write ([`policy`]), and the IRSA trust merge with its
//! evaluation of trust policies ([`trust`]).

pub mod doc;
pub mod eval;
pub mod policy;
pub mod trust;
