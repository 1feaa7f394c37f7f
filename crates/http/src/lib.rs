//! The one place polyvisor drivers make **credentialed HTTP calls**.
//!
//! Every HTTP driver — Proxmox today; OpenStack, HPE VME, Azure, XCP-ng and KubeVirt next —
//! builds its client here instead of calling `reqwest::Client::builder()` itself, so all of
//! them get the same rules without re-deciding them:
//!
//! 1. **Common settings, one parser.** [`HttpSettings::from_settings`] reads `verify_tls`
//!    (RAS) / `verify_tls_certificate` (CloudStack), `ca_file`, `fingerprint` (SHA-256 pin,
//!    as Proxmox shows it), `allow_insecure_http`, `connect_timeout` and `request_timeout`.
//!    Errors and hints name the key the platform in use actually sent.
//! 2. **https only.** [`CredentialedClient::new`] refuses a base URL whose scheme is not
//!    `https` — with [`SchemePolicy::HttpsOnly`] always (Proxmox), with
//!    [`SchemePolicy::HttpsUnlessOptedIn`] unless the operator set the documented lab opt-in
//!    `allow_insecure_http=true` (logged as a warning on every client built).
//! 3. **Typed transport failures.** [`classify`] turns a `reqwest::Error` into a
//!    [`TransportError`] by walking its source chain for `rustls`/`io` errors (never by
//!    reading message text). [`TransportError::Tls`] is **not retryable**: a certificate
//!    does not become valid by asking again.
//!
//! A new driver's skeleton:
//!
//! ```no_run
//! # fn demo(settings: &polyvisor_core::Settings) -> polyvisor_core::Result<()> {
//! use polyvisor_http::{ClientOptions, CredentialedClient, HttpSettings, SchemePolicy};
//! let http = HttpSettings::from_settings(settings, "verify_tls")?;
//! let client = CredentialedClient::new(
//!     "OpenStack",
//!     "https://keystone.lab:5000/v3",
//!     &http,
//!     SchemePolicy::HttpsUnlessOptedIn,
//!     &ClientOptions::default(),
//! )?;
//! let req = client.http().get(client.url("/auth/tokens"));
//! # let _ = req; Ok(()) }
//! ```
//!
//! Then map `reqwest::Error` with [`classify`] into the driver's own `thiserror` enum, and
//! retry only what [`TransportError::retryable`] allows.

mod client;
mod settings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod transport;

pub use client::{ClientIdentity, ClientOptions, CredentialedClient, SchemePolicy};
pub use settings::{parse_fingerprint, HttpSettings, TlsMode, VERIFY_KEYS};
pub use transport::{classify, TransportError};
