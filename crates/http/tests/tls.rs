//! The credentialed client against a real TLS listener: trust modes, typed TLS failures,
//! and the https-only policy.
#![allow(missing_docs)]

use polyvisor_core::{ErrorKind, Settings};
use polyvisor_http::testing::TlsFront;
use polyvisor_http::{classify, ClientOptions, CredentialedClient, HttpSettings, SchemePolicy, TransportError};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain-HTTP server answering every request with `200 {"ok":true}`.
async fn backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let body = r#"{"ok":true}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn client(url: &str, settings: Value, policy: SchemePolicy) -> polyvisor_core::Result<CredentialedClient> {
    let s = HttpSettings::from_settings(&Settings::from_json(&settings).unwrap(), "verify_tls")?;
    CredentialedClient::new("Test", url, &s, policy, &ClientOptions::default())
}

async fn get(c: &CredentialedClient) -> Result<u16, TransportError> {
    c.http().get(c.url("/x")).send().await.map(|r| r.status().as_u16()).map_err(|e| classify(&e))
}

#[tokio::test]
async fn trust_modes_and_typed_tls_failures() {
    let front = TlsFront::start(backend().await).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TlsFront::write_ca_file(dir.path()).unwrap();

    // CA file and the right pin: accepted.
    let c = client(&front.url(), json!({"ca_file": ca}), SchemePolicy::HttpsOnly).unwrap();
    assert_eq!(get(&c).await, Ok(200));
    let c = client(&front.url(), json!({"fingerprint": TlsFront::fingerprint()}), SchemePolicy::HttpsOnly).unwrap();
    assert_eq!(get(&c).await, Ok(200));

    // Web PKI does not know the test CA: a typed, non-retryable TLS failure.
    let c = client(&front.url(), json!({}), SchemePolicy::HttpsOnly).unwrap();
    match get(&c).await {
        Err(e @ TransportError::Tls { .. }) => assert!(!e.retryable(), "{e}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    // A wrong pin names the pin.
    let wrong = "00:".repeat(31) + "00";
    let c = client(&front.url(), json!({"fingerprint": wrong}), SchemePolicy::HttpsOnly).unwrap();
    match get(&c).await {
        Err(TransportError::Tls { reason }) => assert!(reason.contains("pinned fingerprint"), "{reason}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    // TLS spoken to a plain HTTP server is a TLS failure too (not retried).
    let plain = backend().await;
    let c = client(&format!("https://{plain}"), json!({"ca_file": ca}), SchemePolicy::HttpsOnly).unwrap();
    assert!(matches!(get(&c).await, Err(TransportError::Tls { .. })), "https to a plain server");
    // Nothing listening: Connect, retryable.
    let c = client("https://127.0.0.1:1", json!({"ca_file": ca}), SchemePolicy::HttpsOnly).unwrap();
    assert_eq!(get(&c).await, Err(TransportError::Connect));
}

#[tokio::test]
async fn plain_http_is_refused_unless_the_lab_opt_in_is_set() {
    let plain = backend().await;
    let url = format!("http://{plain}");
    // Proxmox-style: never.
    let e = client(&url, json!({"allow_insecure_http": true}), SchemePolicy::HttpsOnly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("only speaks HTTPS"), "{e}");
    // OpenStack-style: only with the explicit opt-in.
    let e = client(&url, json!({}), SchemePolicy::HttpsUnlessOptedIn).unwrap_err();
    assert!(e.message().contains("'allow_insecure_http=true'"), "{e}");
    let e = client(&url, json!({"allow_insecure_http": "false"}), SchemePolicy::HttpsUnlessOptedIn).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let c = client(&url, json!({"allow_insecure_http": "true"}), SchemePolicy::HttpsUnlessOptedIn).unwrap();
    assert_eq!(get(&c).await, Ok(200));
    // Other schemes and user info never pass; the URL is not echoed.
    for bad in ["ftp://h/x", "not a url", "file:///etc/passwd"] {
        let e = client(bad, json!({}), SchemePolicy::HttpsUnlessOptedIn).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        assert!(!e.message().contains(bad), "{e}");
    }
}

#[tokio::test]
async fn embedded_ca_data_and_a_client_identity_for_mutual_tls() {
    use polyvisor_http::testing::{CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM};
    use polyvisor_http::{ClientIdentity, TlsMode};
    let front = TlsFront::start_requiring_client_cert(backend().await).await.unwrap();
    let mut s = HttpSettings::from_settings(&Settings::new(), "verify_tls").unwrap();
    s.tls = TlsMode::CaPem(CA_PEM.as_bytes().to_vec());
    let id = ClientIdentity { cert_pem: CLIENT_CERT_PEM.as_bytes().to_vec(), key_pem: CLIENT_KEY_PEM.into() };
    let with = ClientOptions { identity: Some(id.clone()), ..ClientOptions::default() };
    let c = CredentialedClient::new("Test", &front.url(), &s, SchemePolicy::HttpsOnly, &with).unwrap();
    assert_eq!(get(&c).await, Ok(200), "CA data trusted, client certificate accepted");
    // No identity: the server refuses the handshake (typed TLS failure).
    let c =
        CredentialedClient::new("Test", &front.url(), &s, SchemePolicy::HttpsOnly, &ClientOptions::default()).unwrap();
    assert!(matches!(get(&c).await, Err(TransportError::Tls { .. })));
    // The pin carries the identity too.
    let mut pinned = s.clone();
    pinned.tls = TlsMode::Fingerprint(polyvisor_http::parse_fingerprint(&TlsFront::fingerprint()).unwrap());
    let c = CredentialedClient::new("Test", &front.url(), &pinned, SchemePolicy::HttpsOnly, &with).unwrap();
    assert_eq!(get(&c).await, Ok(200));
    // Bad CA data or a bad key: invalid input at construction, the key never echoed.
    s.tls = TlsMode::CaPem(b"not a certificate".to_vec());
    let e = CredentialedClient::new("Test", &front.url(), &s, SchemePolicy::HttpsOnly, &ClientOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    s.tls = TlsMode::CaPem(CA_PEM.as_bytes().to_vec());
    let bad = ClientOptions {
        identity: Some(ClientIdentity { key_pem: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n".into(), ..id }),
        ..ClientOptions::default()
    };
    let e = CredentialedClient::new("Test", &front.url(), &s, SchemePolicy::HttpsOnly, &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(!format!("{e:?}").contains("c2VjcmV0"), "{e:?}");
}
