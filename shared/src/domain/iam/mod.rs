//! IAM policy documents: reading them ([`doc`]: statements, lists, the one wildcard matcher),
//! the documents we write ([`policy`]), and the IRSA trust merge with its evaluation of trust
//! policies ([`trust`]).

pub mod doc;
pub mod policy;
pub mod trust;
