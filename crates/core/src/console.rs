//! Console access details.

use secrecy::SecretString;

/// How to reach a guest's console. The password is a secret: it never appears in `Debug`
/// output, logs or error text; fronts expose it only on their protocol channel.
#[derive(Clone, Debug)]
pub enum Console {
    /// A VNC endpoint.
    Vnc {
        /// Host or address the console proxy must reach.
        host: String,
        /// TCP port.
        port: u16,
        /// VNC password or ticket, if any.
        password: Option<SecretString>,
        /// The password is valid for one session only (ask again for the next).
        one_time: bool,
    },
    /// A URL to open directly (may embed a ticket, hence secret).
    Url {
        /// The URL.
        url: SecretString,
    },
}
