//! The fakepve launcher lives in the shared dev-only crate `polyvisor-test-support`.
#![allow(unused_imports)]

pub use polyvisor_test_support::fakepve::*;
