//! Dev-only helpers shared by polyvisor's tests and the bench (never a dependency of a
//! shipped crate): the one in-process fake driver the fronts' unit tests use, launching
//! fakepve, the tiny libvirt guest and its domain definition, finding built binaries, temp
//! dirs, and reading the backend contract files that `scripts/ci/start-<backend>.sh` write
//! (see ARCHITECTURE.md, "Test backends").
//!
//! Nothing here reads outside the repository except the contract directory
//! (`/run/polyvisor-test`) and the tiny-guest build directory the start scripts fill.

pub mod backend;
pub mod bin;
pub mod fake;
pub mod fakepve;
pub mod harness;
pub mod temp;
pub mod tiny;
