//! RAS over SSH, end to end: a real OpenSSH `sshd` (Debian `openssh-server`) on a loopback
//! port, started by the test as a non-daemon child with its own config, host key and
//! `authorized_keys` in a temp dir (no system service). The `authorized_keys` line, the
//! pinned `known_hosts` line and the ssh client arguments are exactly what
//! `polyvisor ras install-ssh --json` printed (with the Windows key and known_hosts paths
//! swapped for the temp ones), and `polyvisor check ras -- ssh …` then drives the forced
//! `polyvisor ras` through sshd: all four template levels on `sim` (the sim database is a
//! temp path that reaches polyvisor only through the forced command), the bad-input suite,
//! and a whole session written with CRLF line ends as Windows writes them.
//!
//! Missing OpenSSH fails the test with the install step; it never skips.
#![cfg(unix)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");
const SSHD: &str = "/usr/sbin/sshd";
const INSTALL: &str = "apt-get install openssh-server openssh-client (listed in scripts/ci/apt-packages.txt)";

fn require_openssh() {
    assert!(Path::new(SSHD).exists(), "{SSHD} is missing: {INSTALL}");
    for tool in ["ssh", "ssh-keygen"] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        assert!(found, "`{tool}` is missing: {INSTALL}");
    }
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An `sshd -D` on 127.0.0.1 that forces `polyvisor ras` for one key, plus the client side.
struct Sshd {
    child: Child,
    dir: PathBuf,
    /// The sim database named in the forced command (a directory with a space and a quote).
    db: PathBuf,
    /// `ssh` + the install-ssh arguments with local paths.
    ssh: Vec<String>,
    /// What install-ssh printed.
    plan: Value,
}

impl Sshd {
    /// Starts sshd for `polyvisor ras` with these `install-ssh` level flags.
    fn start(tag: &str, level: &[&str]) -> Sshd {
        require_openssh();
        let dir = std::env::temp_dir().join(format!("pv-ras-ssh-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        // sshd refuses to start without its privilege-separation directory (normally made
        // by the system service, which this test does not use).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (run the test as root)");
        for key in ["host_ed25519", "client_ed25519"] {
            run_ok(
                Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"]).arg(dir.join(key)),
                "ssh-keygen",
            );
        }
        let db_dir = dir.join("sim db's");
        std::fs::create_dir_all(&db_dir).expect("db dir");
        let db = db_dir.join("sim.db");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let plan = install_ssh(&dir, &db, port, level);
            let s =
                |k: &str| plan[k].as_str().unwrap_or_else(|| panic!("install-ssh printed no {k}: {plan}")).to_string();
            std::fs::write(dir.join("authorized_keys"), format!("{}\n", s("authorized_keys_line"))).expect("write");
            std::fs::write(dir.join("known_hosts"), format!("{}\n", s("known_hosts_line"))).expect("write");
            let config = format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_ed25519\nPidFile none\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nAuthorizedKeysFile {d}/authorized_keys\nMaxStartups 100:30:200\n\
                 LogLevel VERBOSE\n",
                d = dir.display()
            );
            std::fs::write(dir.join("sshd_config"), config).expect("write sshd_config");
            let log = std::fs::File::create(dir.join("sshd.log")).expect("sshd log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(dir.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}; {INSTALL}"));
            if wait_listening(&mut child, port, Duration::from_secs(30)) {
                let ssh = client_args(&plan, &dir);
                return Sshd { child, dir, db, ssh, plan };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start listening:\n{last_log}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_listening(child: &mut Child, port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `polyvisor ras install-ssh --json` for root@127.0.0.1:port, forcing this binary on a
/// temp sim database with instant tasks.
fn install_ssh(dir: &Path, db: &Path, port: u16, level: &[&str]) -> Value {
    let mut cmd = Command::new(BIN);
    cmd.args(["ras", "install-ssh", "--json", "--user", "root", "--host", "127.0.0.1", "--driver", "sim"])
        .args(["--port", &port.to_string(), "--polyvisor-path", BIN])
        .arg("--host-key-file")
        .arg(dir.join("host_ed25519.pub"))
        .arg("--public-key-file")
        .arg(dir.join("client_ed25519.pub"))
        .arg("--remote-log-file")
        .arg(dir.join("provider.log"))
        .arg("--env")
        .arg(format!("POLYVISOR_SIM_DB={}", db.display()))
        .args(["--env", "POLYVISOR_SIM_TASK_MS=0", "--env", "POLYVISOR_SIM_BOOT_MS=0"])
        .args(level);
    let out = run_ok(&mut cmd, "polyvisor ras install-ssh");
    serde_json::from_slice(&out.stdout).expect("install-ssh --json prints JSON")
}

/// The printed ssh arguments with the Windows key and known_hosts paths replaced by the
/// temp files; everything else (options, port, user@host) exactly as printed.
fn client_args(plan: &Value, dir: &Path) -> Vec<String> {
    let key = dir.join("client_ed25519").display().to_string();
    let kh = dir.join("known_hosts").display().to_string();
    let mut v = vec!["ssh".to_string()];
    for a in plan["ssh_args"].as_array().expect("ssh_args") {
        let a = a.as_str().expect("string arg");
        v.push(if a == r"C:\ProgramData\polyvisor\ras_ed25519" {
            key.clone()
        } else {
            a.replace(r"C:\ProgramData\polyvisor\known_hosts", &kh)
        });
    }
    v
}

fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("exceeded {limit:?}; stdout:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn cases<'a>(report: &'a Value, group: &str, outcome: &str) -> Vec<&'a Value> {
    report["cases"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["group"] == group && c["outcome"] == outcome).collect())
        .unwrap_or_default()
}

/// `polyvisor check ras -- ssh …` at one level; requires a pass with the flows as expected.
fn level(tag: &str, flags: &[&str], flows_expected: &str) {
    let sshd = Sshd::start(tag, flags);
    let json = sshd.dir.join("report.json");
    let child = Command::new(BIN)
        .args(["check", "ras", "--fast-poll", "--request-timeout", "30", "--json"])
        .arg(&json)
        .arg("--")
        .args(&sshd.ssh)
        .env_remove("POLYVISOR_SIM_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn polyvisor check ras");
    let out = wait_with_deadline(child, Duration::from_secs(600));
    let report: Value = std::fs::read(&json).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`polyvisor check ras -- {}` failed ({:?}).\nstdout:\n{stdout}\nstderr:\n{}\nsshd log:\n{}",
        sshd.ssh.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    const FLOWS: [&str; 4] = ["CreateTemplate", "EnterMaintenance", "ExitMaintenance", "CreateHost"];
    let flows = cases(&report, "flows", flows_expected).into_iter().filter(|c| FLOWS.iter().any(|n| c["name"] == *n));
    assert_eq!(flows.count(), 4, "expected the 4 flows to {flows_expected}:\n{stdout}");
    assert!(cases(&report, "hygiene", "pass").len() >= 18, "bad-input suite did not run fully:\n{stdout}");
    let crlf = cases(&report, "hygiene", "pass").into_iter().any(|c| c["name"] == "CRLF request works");
    assert!(crlf, "the CRLF request case did not pass:\n{stdout}");
    assert!(cases(&report, "hygiene", "fail").is_empty() && cases(&report, "wire", "fail").is_empty(), "{stdout}");
    assert!(cases(&report, "low-level", "pass").len() >= 12, "{stdout}");
    // The database named only in the forced command is the one that was used.
    assert!(sshd.db.exists(), "the sim database from the forced command was not created: {}", sshd.db.display());
    assert!(sshd.log().contains("Accepted publickey for root"), "sshd did not authenticate the key:\n{}", sshd.log());
}

#[test]
fn ssh_sim_level_none() {
    level("none", &["--template-method", "none"], "skip");
}

#[test]
fn ssh_sim_level_basic() {
    level("basic", &["--template-method", "basic"], "pass");
}

#[test]
fn ssh_sim_level_link_clones() {
    level("link", &["--template-method", "basic", "--link-clones"], "pass");
}

#[test]
fn ssh_sim_level_versioning() {
    level("versioning", &["--template-method", "versioning"], "pass");
}

/// Writes `input` to `ssh …` (plus an optional remote command), closes stdin and returns
/// the output; bounded.
fn ssh_session(sshd: &Sshd, remote: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(&sshd.ssh[0])
        .args(&sshd.ssh[1..])
        .args(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let bytes = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let out = wait_with_deadline(child, Duration::from_secs(120));
    let _ = writer.join();
    out
}

#[test]
fn crlf_session_as_windows_writes_it() {
    let sshd = Sshd::start("crlf", &["--template-method", "versioning"]);
    let mut child = Command::new(&sshd.ssh[0])
        .args(&sshd.ssh[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut call = move |req: &str| -> Value {
        stdin.write_all(format!("{req}\r\n").as_bytes()).and_then(|_| stdin.flush()).expect("write to ssh");
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("no reply to {req}: {e}"));
        assert!(line.ends_with(b"\n") && !line.ends_with(b"\r\n"), "reply must end with LF only: {line:?}");
        serde_json::from_slice(&line).unwrap_or_else(|e| panic!("reply to {req} is not JSON ({e}): {line:?}"))
    };
    let init = call(r#"{"method":"provider/initialize"}"#);
    assert_eq!(init["result"]["capabilities"]["template_method"], "versioning", "{init}");
    let connect = call(r#"{"params":{"settings":{"driver":"sim"}},"method":"provider/connect"}"#);
    assert!(connect.get("result").is_some(), "{connect}");
    let list = call(r#"{"method":"guests/list"}"#);
    let id = list["result"]["guests"][0].as_str().unwrap_or_else(|| panic!("guests/list returned no guest: {list}"));
    let get = call(&format!(r#"{{"params":{{"id":"{id}"}},"method":"guests/get"}}"#));
    assert_eq!(get["result"]["id"], Value::from(id), "{get}");
    let bad = call("not json");
    assert_eq!(bad["error"]["code"], -32700, "{bad}");
    // A blank CRLF line is not answered: the next reply answers the next request.
    let again = call("\r\n  \r\n{\"method\":\"Provider/Initialize\"}");
    assert!(again.get("result").is_some(), "{again}");
    drop(call); // closes ssh's stdin (the closure owns it): EOF
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(out.status.success(), "ssh (and the forced polyvisor ras) must exit 0 on EOF: {:?}", out.status);
}

#[test]
fn the_key_can_only_run_polyvisor_ras() {
    let sshd = Sshd::start("forced", &["--template-method", "basic"]);
    let marker = sshd.dir.join("pwned");
    let out =
        ssh_session(&sshd, &["touch", marker.to_str().expect("utf-8 path")], b"{\"method\":\"provider/initialize\"}\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let reply: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not a RAS reply ({e}): {stdout}"));
    assert_eq!(reply["result"]["capabilities"]["template_method"], "basic", "{reply}");
    assert!(!marker.exists(), "the client's own command ran despite command=");
    // restrict: no pty even when asked for one.
    let out = ssh_session(&sshd, &[], b"");
    assert!(out.status.success());
    let mut forced = sshd.ssh.clone();
    forced.retain(|a| a != "-T");
    let pty = Command::new(&forced[0]).args(&forced[1..]).arg("-tt").stdin(Stdio::null()).output().expect("ssh -tt");
    assert!(
        String::from_utf8_lossy(&pty.stderr).contains("PTY allocation request failed"),
        "a pty was granted to the restricted key: {}",
        String::from_utf8_lossy(&pty.stderr)
    );
}

#[test]
fn an_unpinned_host_key_is_refused() {
    let sshd = Sshd::start("pin", &["--template-method", "none"]);
    // Replace the pinned key with another host's key: BatchMode + StrictHostKeyChecking
    // must refuse before anything runs.
    run_ok(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(sshd.dir.join("other")),
        "ssh-keygen",
    );
    let mut other = String::new();
    std::fs::File::open(sshd.dir.join("other.pub")).and_then(|mut f| f.read_to_string(&mut other)).expect("read");
    let line = sshd.plan["known_hosts_line"].as_str().expect("line");
    let host = line.split(' ').next().expect("host field");
    let key: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(sshd.dir.join("known_hosts"), format!("{host} {}\n", key.join(" "))).expect("write");
    let out = ssh_session(&sshd, &[], b"{\"method\":\"provider/initialize\"}\n");
    assert_eq!(out.status.code(), Some(255), "ssh must refuse an unpinned host key");
    assert!(out.stdout.is_empty(), "something answered: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!sshd.db.exists() && !sshd.dir.join("provider.log").exists(), "polyvisor ran behind an unpinned host key");
}
