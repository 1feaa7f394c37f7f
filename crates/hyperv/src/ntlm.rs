//! NTLM for HTTP `Negotiate` on top of the `ntlmclient` crate (message encoding, NTLMv2
//! response). Only what WinRM over HTTPS needs: NEGOTIATE → CHALLENGE → AUTHENTICATE on
//! one connection; no signing/sealing (TLS protects the messages). The AUTHENTICATE message
//! carries the TLS channel binding (MS-NLMP `MsvAvChannelBindings`, RFC 5929
//! `tls-server-end-point`), which hosts with Extended Protection ("CbtHardeningLevel"
//! Strict) require and which ties the login to the TLS session the client verified.

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

/// The hash RFC 5929 `tls-server-end-point` uses for a certificate: its signature's hash,
/// except SHA-256 for MD5 and SHA-1 (and for anything not recognised, e.g. RSASSA-PSS whose
/// hash is a parameter: SHA-256 is what Windows and the usual clients assume there too).
fn end_point_hash(cert: &[u8]) -> fn(&[u8]) -> Vec<u8> {
    use sha2::Digest;
    // The signatureAlgorithm OID: the second element of the outer SEQUENCE.
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    let oid = der::signature_oid(cert).unwrap_or_default();
    if SHA384.contains(&oid) {
        |d| sha2::Sha384::digest(d).to_vec()
    } else if SHA512.contains(&oid) {
        |d| sha2::Sha512::digest(d).to_vec()
    } else {
        |d| sha2::Sha256::digest(d).to_vec()
    }
}

/// The channel-binding hash of a TLS server certificate (DER): MD5 of the GSS-API
/// `gss_channel_bindings_struct` (no addresses) whose application data is
/// `tls-server-end-point:` + the certificate's end-point hash — the value the NTLMv2 blob
/// carries as `MsvAvChannelBindings` and the server recomputes from its own certificate.
pub fn channel_bindings(cert: &[u8]) -> [u8; 16] {
    use md5::Digest;
    let mut app = b"tls-server-end-point:".to_vec();
    app.extend(end_point_hash(cert)(cert));
    let mut s = Vec::with_capacity(20 + app.len());
    s.extend([0u8; 16]); // initiator and acceptor address types and (empty) addresses
    s.extend(u32::try_from(app.len()).unwrap_or(u32::MAX).to_le_bytes());
    s.extend(app);
    md5::Md5::digest(&s).into()
}

/// A minimal DER reader for the one field the channel binding needs (the certificate's
/// signature algorithm). No X.509 crate is in the dependency tree; reading one OID does not
/// justify adding one.
mod der {
    /// (tag, content, rest) of the TLV at the start of `b`.
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let (lb, rest) = b.split_at(n);
            b = rest;
            lb.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x))
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }

    /// The OID bytes of `Certificate.signatureAlgorithm.algorithm`.
    pub(super) fn signature_oid(cert: &[u8]) -> Option<&[u8]> {
        let (0x30, cert, _) = tlv(cert)? else { return None };
        let (0x30, _tbs, rest) = tlv(cert)? else { return None };
        let (0x30, alg, _) = tlv(rest)? else { return None };
        let (0x06, oid, _) = tlv(alg)? else { return None };
        Some(oid)
    }
}

/// The AUTHENTICATE message answering `challenge` (NTLMv2), carrying the channel binding
/// hash `bindings` (see [`channel_bindings`]) when given.
pub fn authenticate(
    challenge: &[u8],
    account: &str,
    password: &str,
    bindings: Option<[u8; 16]>,
) -> Result<Vec<u8>, HvError> {
    let msg = ntlmclient::Message::try_from(challenge)
        .map_err(|_| HvError::Handshake("the server's CHALLENGE message cannot be parsed".into()))?;
    let ntlmclient::Message::Challenge(c) = msg else {
        return Err(HvError::Handshake("the server did not answer with a CHALLENGE message".into()));
    };
    // The server's AV pairs, then ours (MS-NLMP 3.1.5.1.2), then the terminator.
    use ntlmclient::{TargetInfoEntry, TargetInfoType};
    let mut pairs: Vec<TargetInfoEntry> = c
        .target_information
        .iter()
        .filter(|e| !matches!(e.entry_type, TargetInfoType::Terminator | TargetInfoType::ChannelBindings))
        .cloned()
        .collect();
    if let Some(h) = bindings {
        pairs.push(TargetInfoEntry { entry_type: TargetInfoType::ChannelBindings, data: h.to_vec() });
    }
    pairs.push(TargetInfoEntry { entry_type: TargetInfoType::Terminator, data: Vec::new() });
    let target_info: Vec<u8> = pairs.iter().flat_map(|e| e.to_bytes()).collect();
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
        assert!(matches!(authenticate(b"garbage", "pv", "x", None), Err(HvError::Handshake(_))));
    }

    /// A certificate's outer structure: SEQUENCE { tbs SEQUENCE, alg SEQUENCE { OID }, ... }.
    fn cert_with(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x01];
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend(oid);
        let mut alg_seq = vec![0x30, alg.len() as u8];
        alg_seq.extend(alg);
        let sig = [0x03, 0x02, 0x00, 0xff];
        let body: Vec<u8> = tbs.iter().chain(&alg_seq).chain(&sig).copied().collect();
        let mut c = vec![0x30, 0x81, body.len() as u8]; // long-form length, as real certificates use
        c.extend(body);
        c
    }

    #[test]
    fn channel_bindings_follow_rfc_5929_and_the_gss_struct() {
        use md5::Digest as _;
        let sha256_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let sha384_ec = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let c = cert_with(&sha256_rsa);
        assert_eq!(der::signature_oid(&c), Some(&sha256_rsa[..]));
        // The struct pyspnego's GssChannelBindings.pack() builds, hashed.
        let want = |hash: Vec<u8>| -> [u8; 16] {
            let mut app = b"tls-server-end-point:".to_vec();
            app.extend(hash);
            let mut s = vec![0u8; 16];
            s.extend((app.len() as u32).to_le_bytes());
            s.extend(app);
            md5::Md5::digest(&s).into()
        };
        assert_eq!(channel_bindings(&c), want(sha2::Sha256::digest(&c).to_vec()));
        let c384 = cert_with(&sha384_ec);
        assert_eq!(channel_bindings(&c384), want(sha2::Sha384::digest(&c384).to_vec()));
        // Not a certificate: SHA-256 of the bytes, never a panic.
        assert_eq!(channel_bindings(b"junk"), want(sha2::Sha256::digest(b"junk").to_vec()));
        assert_eq!(der::signature_oid(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn the_authenticate_message_carries_the_binding_once() {
        // A CHALLENGE with target info [NbDomain "D", Terminator].
        let mut ti = vec![0x02, 0x00, 0x02, 0x00, b'D', 0x00];
        ti.extend([0u8; 4]);
        let mut m = b"NTLMSSP\0".to_vec();
        m.extend(2u32.to_le_bytes());
        m.extend([0u8, 0, 0, 0, 48, 0, 0, 0]); // target name: empty, at 48
        m.extend(0x0080_8201u32.to_le_bytes()); // unicode, NTLM, target info
        m.extend([1, 2, 3, 4, 5, 6, 7, 8]); // server challenge
        m.extend([0u8; 8]); // context
        m.extend((ti.len() as u16).to_le_bytes());
        m.extend((ti.len() as u16).to_le_bytes());
        m.extend(48u32.to_le_bytes());
        m.extend(ti);
        let h = [0xab; 16];
        let with = authenticate(&m, "pv", "pw", Some(h)).unwrap();
        let without = authenticate(&m, "pv", "pw", None).unwrap();
        let pair = [&[0x0a, 0x00, 0x10, 0x00][..], &h[..]].concat();
        assert_eq!(with.windows(pair.len()).filter(|w| *w == &pair[..]).count(), 1, "one MsvAvChannelBindings");
        assert!(!without.windows(4).any(|w| w == [0x0a, 0x00, 0x10, 0x00]));
    }
}
