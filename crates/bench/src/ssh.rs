//! SSH figures (`--ssh`): what running `polyvisor ras` behind OpenSSH adds, measured the
//! way the RAS Provider Agent would see it with the `install-ssh` fields: a real `sshd`
//! (Debian `openssh-server`) on a loopback port with its own config, host key and the
//! `authorized_keys` line `polyvisor ras install-ssh` prints, and the `ssh` client with the
//! printed arguments. Each figure is paired with the same measurement without SSH in the
//! same run. Needs root: sshd's privilege separation, and the login is a dedicated system
//! user `pvbench` (created when missing) whose shell is `/bin/sh`, as `install-ssh`
//! recommends — root's own shell start-up files (e.g. a `pyenv init` in `.bashrc`) would
//! otherwise dominate the figure.

use crate::stats::median_p95_ms;
use crate::Figure;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const USER: &str = "pvbench";

/// A provider process (direct or through ssh) with line I/O.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Session {
    fn spawn(argv: &[String], db: &Path) -> Result<Session, String> {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("POLYVISOR_SIM_DB", db)
            .env("POLYVISOR_SIM_TASK_MS", "0")
            .env("POLYVISOR_SIM_BOOT_MS", "0")
            .env_remove("POLYVISOR_LOG_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", argv[0]))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Session { child, stdin, stdout, line: String::new() })
    }

    fn call(&mut self, req: &str) -> Result<&str, String> {
        self.stdin.write_all(req.as_bytes()).and_then(|_| self.stdin.write_all(b"\n")).map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.line.clear();
        self.stdout.read_line(&mut self.line).map_err(|e| e.to_string())?;
        if self.line.is_empty() {
            return Err(format!("provider closed stdout after {req}"));
        }
        Ok(&self.line)
    }

    fn finish(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// The sshd child; killed on drop.
struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measures start-up and per-request cost through a loopback sshd against direct stdio.
pub fn run(bin: &Path, dir: &Path, starts: usize, gets: usize) -> Result<Vec<Figure>, String> {
    if !Path::new(SSHD).exists() {
        return Err(format!("--ssh needs {SSHD}: apt-get install openssh-server openssh-client"));
    }
    let bin = std::fs::canonicalize(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let dir = dir.join("ssh");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd (sshd's privsep dir; run as root): {e}"))?;
    for key in ["host_ed25519", "client_ed25519"] {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
            .arg(dir.join(key))
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("ssh-keygen: {e} (apt-get install openssh-client)"))?;
        if !st.success() {
            return Err(format!("ssh-keygen failed: {st}"));
        }
    }
    ensure_user()?;
    // The forced command runs as USER: its database lives in a directory USER may write
    // (separate from the direct run's, so neither process meets the other's WAL files).
    let ssh_db_dir = dir.join("db");
    std::fs::create_dir_all(&ssh_db_dir).map_err(|e| format!("{}: {e}", ssh_db_dir.display()))?;
    world_writable(&ssh_db_dir)?;
    let db = dir.join("sim.db");
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))?;
    let plan = install_ssh(&bin, &dir, &ssh_db_dir.join("sim.db"), port)?;
    let field = |k: &str| plan[k].as_str().map(String::from).ok_or(format!("install-ssh printed no {k}"));
    write(&dir.join("authorized_keys"), &format!("{}\n", field("authorized_keys_line")?))?;
    write(&dir.join("known_hosts"), &format!("{}\n", field("known_hosts_line")?))?;
    let d = dir.display();
    write(
        &dir.join("sshd_config"),
        &format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_ed25519\nPidFile none\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AuthorizedKeysFile {d}/authorized_keys\nMaxStartups 100:30:200\n"
        ),
    )?;
    let mut sshd = Sshd(
        Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{SSHD}: {e}"))?,
    );
    wait_listening(&mut sshd.0, port)?;

    let ssh = client_argv(&plan, &dir)?;
    let direct: Vec<String> =
        [bin.display().to_string(), "ras".into(), "--template-method".into(), "versioning".into()].into();

    // Warm up both paths (seeds the database, fills caches).
    for argv in [&direct, &ssh] {
        let mut s = Session::spawn(argv, &db)?;
        s.call(r#"{"method":"provider/initialize"}"#)?;
        s.finish();
    }

    let n = starts.clamp(1, 50);
    let (mut d_start, mut s_start) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        for (argv, out) in [(&direct, &mut d_start), (&ssh, &mut s_start)] {
            let t = Instant::now();
            let mut s = Session::spawn(argv, &db)?;
            s.call(r#"{"method":"provider/initialize"}"#)?;
            out.push(t.elapsed());
            s.finish();
        }
    }
    let (dm, dp) = median_p95_ms(&mut d_start);
    let (sm, sp) = median_p95_ms(&mut s_start);
    let mut figures = vec![
        Figure::new(
            "RAS over SSH: process start → first reply (initialize)",
            sm,
            "ms",
            format!("median of {n}; p95 {sp:.2} ms; ssh handshake + forced command on loopback sshd"),
        ),
        Figure::new(
            "RAS direct (same run): process start → first reply",
            dm,
            "ms",
            format!("median of {n}; p95 {dp:.2} ms; SSH adds {:.2} ms per process start", sm - dm),
        ),
    ];

    let m = gets.clamp(1, 5000);
    let mut per_request = Vec::new();
    for argv in [&direct, &ssh] {
        let mut s = Session::spawn(argv, &db)?;
        let list: Value = serde_json::from_str(s.call(r#"{"method":"guests/list"}"#)?).map_err(|e| e.to_string())?;
        let id = list["result"]["guests"][0].as_str().ok_or("no guests in the demo estate")?.to_string();
        let req = serde_json::json!({"method": "guests/get", "params": {"id": id}}).to_string();
        let mut samples = Vec::with_capacity(m);
        let all = Instant::now();
        for _ in 0..m {
            let t = Instant::now();
            let reply = s.call(&req)?;
            if !reply.contains("\"result\"") {
                return Err(format!("guests/get failed: {reply}"));
            }
            samples.push(t.elapsed());
        }
        let rate = m as f64 / all.elapsed().as_secs_f64();
        s.finish();
        let (med, p95) = median_p95_ms(&mut samples);
        per_request.push((med, p95, rate));
    }
    let (dmed, dp95, drate) = per_request[0];
    let (smed, sp95, srate) = per_request[1];
    figures.push(Figure::new(
        "RAS over SSH: guests/get round trip",
        smed,
        "ms",
        format!("median of {m} serial requests in one session; p95 {sp95:.3} ms; {srate:.0} req/s"),
    ));
    figures.push(Figure::new(
        "RAS direct (same run): guests/get round trip",
        dmed,
        "ms",
        format!("median of {m}; p95 {dp95:.3} ms; {drate:.0} req/s; SSH adds {:.3} ms per request", smed - dmed),
    ));
    drop(sshd);
    Ok(figures)
}

/// Creates the dedicated login user when missing: system account, shell `/bin/sh`, home
/// `/`, password field `*` (no password login, but not "locked", which sshd without PAM
/// would refuse even for keys).
fn ensure_user() -> Result<(), String> {
    let exists = Command::new("id").arg("-u").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if exists.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    let st = Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh", "--password", "*", USER])
        .status()
        .map_err(|e| format!("useradd: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("useradd {USER} failed ({st}); --ssh needs root"))
    }
}

#[cfg(unix)]
fn world_writable(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(not(unix))]
fn world_writable(_dir: &Path) -> Result<(), String> {
    Err("--ssh runs a Linux sshd; it is not available on this OS".into())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn install_ssh(bin: &Path, dir: &Path, db: &Path, port: u16) -> Result<Value, String> {
    let out = Command::new(bin)
        .args(["ras", "install-ssh", "--json", "--user", USER, "--host", "127.0.0.1", "--driver", "sim"])
        .args(["--template-method", "versioning", "--port", &port.to_string()])
        .arg("--polyvisor-path")
        .arg(bin)
        .arg("--host-key-file")
        .arg(dir.join("host_ed25519.pub"))
        .arg("--public-key-file")
        .arg(dir.join("client_ed25519.pub"))
        .arg("--env")
        .arg(format!("POLYVISOR_SIM_DB={}", db.display()))
        .args(["--env", "POLYVISOR_SIM_TASK_MS=0", "--env", "POLYVISOR_SIM_BOOT_MS=0"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("install-ssh: {e}"))?;
    if !out.status.success() {
        return Err(format!("install-ssh failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("install-ssh --json: {e}"))
}

/// `ssh` + the printed arguments, with the Windows key and known_hosts paths swapped.
fn client_argv(plan: &Value, dir: &Path) -> Result<Vec<String>, String> {
    let local = |name: &str| -> PathBuf { dir.join(name) };
    let mut v = vec!["ssh".to_string()];
    for a in plan["ssh_args"].as_array().ok_or("install-ssh printed no ssh_args")? {
        let a = a.as_str().ok_or("non-string ssh arg")?;
        v.push(if a == r"C:\ProgramData\polyvisor\ras_ed25519" {
            local("client_ed25519").display().to_string()
        } else {
            a.replace(r"C:\ProgramData\polyvisor\known_hosts", &local("known_hosts").display().to_string())
        });
    }
    Ok(v)
}

fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("sshd exited early: {st}"));
        }
        if TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("sshd did not listen within 30 s".into())
}
