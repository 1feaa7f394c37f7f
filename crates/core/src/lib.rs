//! polyvisor core: the hypervisor-neutral domain model, the async [`Driver`] trait,
//! capabilities as data, self-describing task ids and the one [`Error`] type that every
//! protocol front maps to its platform's error form.
//!
//! Layering: protocol fronts (RAS, CloudStack, ...) depend on this crate only; drivers
//! (sim, Proxmox, libvirt, ...) implement [`Driver`]; the CLI wires a [`DriverFactory`]
//! into a front. Nothing here knows about a wire protocol, HTTP or a CLI.
//!
//! Invariants the compiler cannot check (every driver must keep them):
//! - **Stateless drivers.** Anything that must outlive one request (task progress,
//!   template flags, clone tracking) lives in a self-describing [`TaskId`] or in the
//!   hypervisor itself. Any number of processes on any number of machines agree. Only the
//!   `sim` driver has its own (locked, shared) database.
//! - **Bounded.** Every call returns within a few seconds; long work returns a [`TaskId`]
//!   that [`Driver::task_status`] advances (its shared prologue is provided here; each
//!   driver implements the [`Driver::advance_task`] hook).
//! - **No secrets in errors.** [`Error`] messages go verbatim to platforms' logs.

mod caps;
mod console;
mod driver;
mod error;
pub mod events;
mod model;
pub mod net;
pub mod netops;
mod settings;
mod spec;
pub mod task;

pub use caps::{Capabilities, ConsoleKind, TemplateStrategy};
pub use console::Console;
pub use driver::{Driver, DriverFactory, OpenOptions, TemplatePreference};
pub use error::{Error, ErrorKind, Result};
pub use model::{Guest, GuestId, GuestSummary, Nic, PowerAction, PowerState};
pub use secrecy::{ExposeSecret, SecretString};
pub use settings::Settings;
pub use spec::{CloneMode, CloneSpec, CreateSource, CreateSpec, NicSpec, Snapshot, SnapshotSpec};
pub use task::{CloneStarted, TaskId, TaskOutput, TaskStatus, TaskToken};
