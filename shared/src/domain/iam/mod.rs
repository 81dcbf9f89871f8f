//! IAM policy documents: the documents we write ([`policy`]), and the IRSA trust merge with
//! its evaluation of trust policies ([`trust`]).

pub mod policy;
pub mod trust;
