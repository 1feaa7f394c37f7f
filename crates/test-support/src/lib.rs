//! Dev-only support shared by polyvisor's tests. Never a dependency of shipped code.
//!
//! - [`fake`]: the one in-process fake driver (and factory) the fronts' unit tests use.

pub mod fake;
