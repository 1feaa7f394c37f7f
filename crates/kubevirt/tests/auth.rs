//! Authentication the way Kubernetes users expect it (issue 13 item 2), end to end over TLS:
//! a kubeconfig with the cluster CA embedded (`certificate-authority-data`) and a client
//! certificate (`client-certificate-data` / `client-key-data`, mutual TLS: the API front
//! completes the handshake only for a certificate signed by its client CA), `token` and
//! `tokenFile` users, and the in-cluster configuration (service host/port + the mounted
//! service-account directory, pointed at a temp dir). The API is a wiremock that checks the
//! bearer token where one is expected, behind `polyvisor_http::testing::TlsFront`.

use base64::Engine as _;
use polyvisor_core::{Driver, ErrorKind, Settings};
use polyvisor_http::testing::{TlsFront, CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM};
use polyvisor_kubevirt::config::{Config, Pod};
use polyvisor_kubevirt::{open_driver, KubeVirt};
use serde_json::json;
use std::path::Path;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NS: &str = "tenant-a";

/// An API that answers the probe (KubeVirt version + the VM list of `NS`), only with
/// `Authorization: Bearer <token>` when `token` is given.
async fn api(token: Option<&str>) -> MockServer {
    let m = MockServer::start().await;
    let version = Mock::given(method("GET")).and(path("/apis/subresources.kubevirt.io/v1/version"));
    let list = Mock::given(method("GET")).and(path(format!("/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines")));
    let (version, list) = match token {
        Some(t) => {
            let h = format!("Bearer {t}");
            (version.and(header("authorization", h.as_str())), list.and(header("authorization", h.as_str())))
        }
        None => (version, list),
    };
    version.respond_with(ResponseTemplate::new(200).set_body_json(json!({"gitVersion": "v1.5.0"}))).mount(&m).await;
    list.respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineList", "metadata": {}, "items": []
    })))
    .mount(&m)
    .await;
    // Anything else (e.g. a request without the expected token): 401 as the API server.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401
        })))
        .mount(&m)
        .await;
    m
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig for `server` whose user is `user` (YAML lines under `user:`).
fn kubeconfig(dir: &Path, server: &str, user: &str) -> String {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    \
         namespace: {NS}\nusers:\n- name: u\n  user:\n{user}",
        b64(CA_PEM)
    );
    let p = dir.join("kubeconfig");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn from_kubeconfig(path: &str) -> KubeVirt {
    open_driver(&Settings::from_pairs([("kubeconfig", path)])).unwrap()
}

#[tokio::test]
async fn a_kubeconfig_with_embedded_ca_and_a_client_certificate_speaks_mutual_tls() {
    let m = api(None).await;
    let front = TlsFront::start_requiring_client_cert(*m.address()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let with_cert = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(CLIENT_CERT_PEM),
        b64(CLIENT_KEY_PEM)
    );
    let d = from_kubeconfig(&kubeconfig(dir.path(), &front.url(), &with_cert));
    let desc = d.probe().await.unwrap();
    assert!(desc.contains("KubeVirt v1.5.0") && desc.contains(NS), "{desc}");
    // The same kubeconfig without the certificate: the front refuses the handshake.
    let d = from_kubeconfig(&kubeconfig(dir.path(), &front.url(), "    username: nobody\n"));
    let e = d.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.message().contains("CertificateRequired"), "{e}");
    // Client certificate and key as files (client-certificate / client-key).
    std::fs::write(dir.path().join("c.pem"), CLIENT_CERT_PEM).unwrap();
    std::fs::write(dir.path().join("k.pem"), CLIENT_KEY_PEM).unwrap();
    let files = format!(
        "    client-certificate: {}\n    client-key: {}\n",
        dir.path().join("c.pem").display(),
        dir.path().join("k.pem").display()
    );
    assert!(from_kubeconfig(&kubeconfig(dir.path(), &front.url(), &files)).probe().await.is_ok());
    // The fingerprint pin also carries the client certificate.
    let pinned = KubeVirt::new(
        Config::from_settings(&Settings::from_pairs([
            ("kubeconfig", kubeconfig(dir.path(), &front.url(), &with_cert)),
            ("fingerprint", TlsFront::fingerprint()),
        ]))
        .unwrap(),
    )
    .unwrap();
    assert!(pinned.probe().await.is_ok());
}

#[tokio::test]
async fn kubeconfig_token_and_token_file_users_send_their_bearer_token() {
    let m = api(Some("tok-inline")).await;
    let front = TlsFront::start(*m.address()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = from_kubeconfig(&kubeconfig(dir.path(), &front.url(), "    token: tok-inline\n"));
    d.probe().await.unwrap();
    let wrong = from_kubeconfig(&kubeconfig(dir.path(), &front.url(), "    token: tok-wrong\n"));
    assert_eq!(wrong.probe().await.unwrap_err().kind(), ErrorKind::Unauthorized);
    // tokenFile is re-read per request (projected tokens rotate).
    let file = dir.path().join("token");
    std::fs::write(&file, "tok-wrong\n").unwrap();
    let d = from_kubeconfig(&kubeconfig(dir.path(), &front.url(), &format!("    tokenFile: {}\n", file.display())));
    assert_eq!(d.probe().await.unwrap_err().kind(), ErrorKind::Unauthorized);
    std::fs::write(&file, "tok-inline\n").unwrap();
    d.probe().await.unwrap();
}

#[tokio::test]
async fn in_cluster_config_uses_the_mounted_service_account() {
    let m = api(Some("sa-token")).await;
    let front = TlsFront::start(*m.address()).await.unwrap();
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), "sa-token\n").unwrap();
    std::fs::write(sa.path().join("ca.crt"), CA_PEM).unwrap();
    std::fs::write(sa.path().join("namespace"), format!("{NS}\n")).unwrap();
    let pod = Pod {
        service_host: Some("127.0.0.1".into()),
        service_port: Some(front.addr().port().to_string()),
        account_dir: sa.path().to_path_buf(),
    };
    let d = KubeVirt::new(Config::from_settings_in(&Settings::new(), pod.clone()).unwrap()).unwrap();
    assert_eq!(d.namespace(), NS, "the pod's namespace");
    let desc = d.probe().await.unwrap();
    assert!(desc.contains(&front.url()), "{desc}");
    // Without a mounted token (and no 'token' setting): a clear refusal, no request.
    std::fs::remove_file(sa.path().join("token")).unwrap();
    let e = KubeVirt::new(Config::from_settings_in(&Settings::new(), pod).unwrap()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("service-account token"), "{e}");
}

#[tokio::test]
async fn exec_and_auth_provider_plugins_are_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    for user in [
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: oc\n      args: [whoami, -t]\n",
        "    auth-provider:\n      name: oidc\n      config: {}\n",
    ] {
        let p = kubeconfig(dir.path(), "https://api.ocp.lab:6443", user);
        let e = open_driver(&Settings::from_pairs([("kubeconfig", p.as_str())])).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.message().contains("plugin") && e.message().contains("'token'"), "{e}");
    }
    // A 'token' setting is the way out: it wins over the plugin.
    let p = kubeconfig(
        dir.path(),
        "https://api.ocp.lab:6443",
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: oc\n",
    );
    assert!(open_driver(&Settings::from_pairs([("kubeconfig", p.as_str()), ("token", "t")])).is_ok());
}
