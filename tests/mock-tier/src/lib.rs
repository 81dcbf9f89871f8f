//! The mock tier has no library code: see `tests/mock_steps.rs`.
