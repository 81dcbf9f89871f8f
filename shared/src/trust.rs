//! The IRSA trust merge. (Stub: being written.)
