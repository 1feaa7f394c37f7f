//! NTLM for HTTP `Negotiate` on top of the `ntlmclient` crate (message encoding, NTLMv2
//! response). Only what WinRM over HTTPS needs: NEGOTIATE → CHALLENGE → AUTHENTICATE on
//! one connection; no signing/sealing (TLS protects the messages).

use crate::error::HvError;

fn flags() -> ntlmclient::Flags {
    ntlmclient::Flags::NEGOTIATE_UNICODE
        | ntlmclient::Flags::REQUEST_TARGET
        | ntlmclient::Flags::NEGOTIATE_NTLM
        | ntlmclient::Flags::NEGOTIATE_ALWAYS_SIGN
        | ntlmclient::Flags::NEGOTIATE_NTLM2_KEY
}

/// The NEGOTIATE message.
pub fn negotiate() -> Result<Vec<u8>, HvError> {
    ntlmclient::Message::Negotiate(ntlmclient::NegotiateMessage {
        flags: flags(),
        supplied_domain: String::new(),
        supplied_workstation: String::new(),
        os_version: Default::default(),
    })
    .to_bytes()
    .map_err(|_| HvError::Handshake("cannot encode the NEGOTIATE message".into()))
}

/// Splits `DOMAIN\user` / `user@domain` into (domain, user).
pub fn split_user(account: &str) -> (String, String) {
    if let Some((d, u)) = account.split_once('\\') {
        (d.to_string(), u.to_string())
    } else if let Some((u, d)) = account.split_once('@') {
        (d.to_string(), u.to_string())
    } else {
        (String::new(), account.to_string())
    }
}

/// The AUTHENTICATE message answering `challenge` (NTLMv2).
pub fn authenticate(challenge: &[u8], account: &str, password: &str) -> Result<Vec<u8>, HvError> {
    let msg = ntlmclient::Message::try_from(challenge)
        .map_err(|_| HvError::Handshake("the server's CHALLENGE message cannot be parsed".into()))?;
    let ntlmclient::Message::Challenge(c) = msg else {
        return Err(HvError::Handshake("the server did not answer with a CHALLENGE message".into()));
    };
    let target_info: Vec<u8> = c.target_information.iter().flat_map(|e| e.to_bytes()).collect();
    let (domain, username) = split_user(account);
    let creds = ntlmclient::Credentials { username, password: password.to_string(), domain };
    let resp = ntlmclient::respond_challenge_ntlm_v2(c.challenge, &target_info, ntlmclient::get_ntlm_time(), &creds);
    resp.to_message(&creds, "", flags())
        .to_bytes()
        .map_err(|_| HvError::Handshake("cannot encode the AUTHENTICATE message".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_is_an_ntlmssp_message_and_accounts_split() {
        let n = negotiate().unwrap();
        assert_eq!(&n[..8], b"NTLMSSP\0");
        assert_eq!(u32::from_le_bytes([n[8], n[9], n[10], n[11]]), 1);
        assert_eq!(split_user("LAB\\pv"), ("LAB".into(), "pv".into()));
        assert_eq!(split_user("pv@lab.local"), ("lab.local".into(), "pv".into()));
        assert_eq!(split_user("pv"), ("".into(), "pv".into()));
        assert!(matches!(authenticate(b"garbage", "pv", "x"), Err(HvError::Handshake(_))));
    }
}
