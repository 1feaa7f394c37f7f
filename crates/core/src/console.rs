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
    /// An RDP connection to the hypervisor host that the host hands to the guest's console
    /// (Hyper-V's VMConnect: RDP on port 2179 with the VM id as pre-connection blob); the
    /// user's own Windows credentials for the host authenticate it, so it carries no secret.
    Rdp {
        /// The hypervisor host.
        host: String,
        /// TCP port (2179 for Hyper-V).
        port: u16,
        /// Pre-connection blob: the VM id.
        pcb: String,
    },
}

impl Console {
    /// For [`Console::Rdp`], the `.rdp` file a Remote Desktop client (`mstsc`) opens to reach
    /// the console: the host and port, the pre-connection blob, and no RDP security-layer
    /// negotiation (the VMConnect listener expects that).
    pub fn rdp_file(&self) -> Option<String> {
        match self {
            Console::Rdp { host, port, pcb } => Some(format!(
                "full address:s:{host}:{port}\r\nserver port:i:{port}\r\npcb:s:{pcb}\r\nnegotiate security layer:i:0\r\n"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rdp_console_has_an_rdp_file_and_others_none() {
        let c =
            Console::Rdp { host: "hv01.lab".into(), port: 2179, pcb: "6b0c2c4e-0000-4000-8000-000000000001".into() };
        let f = c.rdp_file().unwrap();
        assert_eq!(
            f,
            "full address:s:hv01.lab:2179\r\nserver port:i:2179\r\npcb:s:6b0c2c4e-0000-4000-8000-000000000001\r\n\
             negotiate security layer:i:0\r\n"
        );
        assert!(Console::Url { url: SecretString::from("https://x") }.rdp_file().is_none());
    }
}
