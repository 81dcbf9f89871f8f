//! Helm values rendering. (Stub: being written.)
