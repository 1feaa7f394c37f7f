//! `polyvisor ras install-ssh`: the supported way to run polyvisor for Parallels RAS today.
//!
//! The RAS Provider Agent is a Windows service; it starts Windows' built-in OpenSSH client
//! (`ssh.exe`), which logs in to a Linux host with a dedicated key whose `authorized_keys`
//! entry forces `polyvisor ras …` and forbids everything else (`restrict`: no pty, no
//! forwarding). stdin/stdout of `ssh.exe` are the provider's streams, so the RAS wire is
//! unchanged, and the custom variables (secrets included) still arrive in
//! `provider/connect` inside the encrypted channel, never on a command line.
//!
//! This module validates every input and prints (it writes nothing):
//! - the RAS Console fields (Command, Arguments quoted by the Windows argument rules,
//!   Working directory, Custom variables);
//! - the pinned `known_hosts` line for the Windows side and the host key fingerprint;
//! - the restricted `authorized_keys` line (POSIX-shell-quoted command inside OpenSSH
//!   `command="…"` quoting) and the Linux-side set-up.

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::PathBuf;

/// The Windows OpenSSH client shipped with Windows 10 1809+ / Server 2019+.
pub const DEFAULT_SSH_EXE: &str = r"C:\Windows\System32\OpenSSH\ssh.exe";
/// Where the key, the pinned host key and the working directory live on the RAS server.
pub const DEFAULT_WORK_DIR: &str = r"C:\ProgramData\polyvisor";
/// Where the host's own ed25519 public key usually is (read when no host key is given).
pub const DEFAULT_HOST_KEY_FILE: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// The advertised RAS template level (mirrors `polyvisor ras --template-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateMethod {
    /// Power management only.
    None,
    /// Full clones (with `--link-clones`: link clones).
    Basic,
    /// Template versions.
    Versioning,
}

impl TemplateMethod {
    fn as_str(self) -> &'static str {
        match self {
            TemplateMethod::None => "none",
            TemplateMethod::Basic => "basic",
            TemplateMethod::Versioning => "versioning",
        }
    }
}

/// `polyvisor ras install-ssh` options.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallSshArgs {
    /// The dedicated Linux account the RAS key logs in as (e.g. `pvras`).
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The Linux host running polyvisor, as the RAS server reaches it (DNS name or IP).
    #[arg(long, value_name = "HOST")]
    pub host: String,
    /// The host's SSH port.
    #[arg(long, default_value_t = 22, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The polyvisor driver the forced command serves (custom variable `driver`).
    #[arg(long, value_name = "NAME")]
    pub driver: String,
    /// The RAS template level, fixed in the forced command (RAS asks for capabilities
    /// before it sends the custom variables).
    #[arg(long, value_enum, default_value_t = TemplateMethod::Versioning)]
    pub template_method: TemplateMethod,
    /// Advertise link clones (with `--template-method basic`: the link-clone level).
    #[arg(long)]
    pub link_clones: bool,
    /// Windows path of the RAS server's private key (no spaces, quotes or `%`).
    #[arg(long, value_name = "WINDOWS PATH", default_value = r"C:\ProgramData\polyvisor\ras_ed25519")]
    pub key_file: String,
    /// Windows path of the pinned known_hosts file holding exactly the host's key (no
    /// spaces, quotes or `%`); used as the user and the global known_hosts file.
    #[arg(long, value_name = "WINDOWS PATH", default_value = r"C:\ProgramData\polyvisor\known_hosts")]
    pub known_hosts: String,
    /// The host's public key (`ssh-ed25519 AAAA…`) to pin; default: read `--host-key-file`.
    #[arg(long, value_name = "TYPE BASE64", conflicts_with = "host_key_file")]
    pub host_key: Option<String>,
    /// File with the host's public key to pin (default /etc/ssh/ssh_host_ed25519_key.pub).
    #[arg(long, value_name = "PATH")]
    pub host_key_file: Option<PathBuf>,
    /// The RAS key's public half (`ssh-ed25519 AAAA… comment`) for the authorized_keys
    /// line; without it (or --public-key-file) the line shows where it goes.
    #[arg(long, value_name = "TYPE BASE64 [COMMENT]", conflicts_with = "public_key_file")]
    pub public_key: Option<String>,
    /// File with the RAS key's public half (the `.pub` copied from the RAS server).
    #[arg(long, value_name = "PATH")]
    pub public_key_file: Option<PathBuf>,
    /// Absolute path of polyvisor on the Linux host.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/polyvisor")]
    pub polyvisor_path: String,
    /// Log file on the Linux host (the forced command's `--log-file`; named apart from
    /// polyvisor's own global `--log-file`).
    #[arg(long, value_name = "PATH")]
    pub remote_log_file: Option<String>,
    /// Non-secret environment for the forced command (`KEY=VALUE`, repeatable), e.g.
    /// `POLYVISOR_SIM_DB=/var/lib/pvras/sim.db`. Keys that look secret are refused:
    /// secrets belong in Secure custom variables.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Only accept the key from these addresses (`from="…"`, e.g. the RAS server's IP).
    #[arg(long, value_name = "PATTERNS")]
    pub from: Option<String>,
    /// RAS Console "Working directory" (Windows path).
    #[arg(long, value_name = "WINDOWS PATH", default_value = DEFAULT_WORK_DIR)]
    pub work_dir: String,
    /// RAS Console "Command" (the Windows OpenSSH client).
    #[arg(long, value_name = "WINDOWS PATH", default_value = DEFAULT_SSH_EXE)]
    pub ssh_exe: String,
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One RAS custom variable to enter in the Console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    /// Key.
    pub name: String,
    /// Value.
    pub value: String,
    /// `Regular` or `Secure`.
    pub kind: &'static str,
}

/// Everything `install-ssh` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// RAS Console "Command".
    pub command: String,
    /// RAS Console "Arguments" (Windows command-line quoting).
    pub arguments: String,
    /// The same arguments as the argv `ssh.exe` receives.
    pub ssh_args: Vec<String>,
    /// RAS Console "Working directory".
    pub working_directory: String,
    /// RAS Console "Custom variables" polyvisor needs (plus the driver's own settings).
    pub custom_variables: Vec<Variable>,
    /// The exact line of the pinned known_hosts file on the RAS server.
    pub known_hosts_line: String,
    /// SHA-256 fingerprint of the pinned host key (`ssh-keygen -lf` format).
    pub host_key_fingerprint: String,
    /// The command sshd forces for the RAS key (run by the user's shell with `-c`).
    pub forced_command: String,
    /// The `authorized_keys` options (`restrict,command="…"`).
    pub authorized_keys_options: String,
    /// The full `authorized_keys` line, when the public key was given.
    pub authorized_keys_line: Option<String>,
}

/// Runs `install-ssh`: prints the plan, or the first invalid input (exit 2).
pub fn run(args: &InstallSshArgs, driver_names: &[&str]) -> std::process::ExitCode {
    match plan(args, driver_names) {
        Ok(p) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
            } else {
                print!("{}", render(args, &p));
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("polyvisor ras install-ssh: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Validates the inputs and builds the plan.
pub fn plan(a: &InstallSshArgs, driver_names: &[&str]) -> Result<Plan, String> {
    check_user(&a.user)?;
    check_host(&a.host)?;
    if !driver_names.contains(&a.driver.as_str()) {
        return Err(format!("--driver must be one of this build's drivers: {}", driver_names.join(", ")));
    }
    if a.link_clones && a.template_method != TemplateMethod::Basic && a.template_method != TemplateMethod::Versioning {
        return Err("--link-clones needs --template-method basic (or versioning)".into());
    }
    check_ssh_path("--key-file", &a.key_file)?;
    check_ssh_path("--known-hosts", &a.known_hosts)?;
    check_windows_path("--work-dir", &a.work_dir)?;
    check_windows_path("--ssh-exe", &a.ssh_exe)?;
    check_linux_path("--polyvisor-path", &a.polyvisor_path)?;
    if let Some(l) = &a.remote_log_file {
        check_linux_path("--remote-log-file", l)?;
    }
    let env = a.env.iter().map(|kv| parse_env(kv)).collect::<Result<Vec<_>, _>>()?;
    if let Some(f) = &a.from {
        check_from(f)?;
    }
    let host_key = match (&a.host_key, &a.host_key_file) {
        (Some(text), _) => PublicKey::parse("--host-key", text)?,
        (None, file) => {
            let path = file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_HOST_KEY_FILE));
            PublicKey::parse("--host-key-file", &read_key_file(&path, "--host-key or --host-key-file")?)?
        }
    };
    let client_key = match (&a.public_key, &a.public_key_file) {
        (Some(text), _) => Some(PublicKey::parse("--public-key", text)?),
        (None, Some(path)) => {
            Some(PublicKey::parse("--public-key-file", &read_key_file(path, "--public-key or --public-key-file")?)?)
        }
        (None, None) => None,
    };

    let ssh_args: Vec<String> = [
        "-T",
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=15",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-o".into(),
        format!("UserKnownHostsFile={}", a.known_hosts),
        "-o".into(),
        format!("GlobalKnownHostsFile={}", a.known_hosts),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-i".into(),
        a.key_file.clone(),
        "-p".into(),
        a.port.to_string(),
        format!("{}@{}", a.user, a.host),
    ])
    .collect();
    let arguments = ssh_args.iter().map(|s| windows_quote(s)).collect::<Vec<_>>().join(" ");

    let mut words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", sh_quote(v))).collect();
    words.push(sh_quote(&a.polyvisor_path));
    if let Some(l) = &a.remote_log_file {
        words.push("--log-file".into());
        words.push(sh_quote(l));
    }
    words.extend(["ras", "--driver", &a.driver, "--template-method", a.template_method.as_str()].map(String::from));
    if a.link_clones {
        words.push("--link-clones".into());
    }
    let forced_command = words.join(" ");
    if forced_command.ends_with('\\') {
        // Cannot happen (every value with a backslash is single-quoted), but a trailing
        // backslash would escape the closing quote of command="…".
        return Err("internal: the forced command ends with a backslash".into());
    }
    let mut options = String::from("restrict");
    if let Some(f) = &a.from {
        let _ = write!(options, ",from=\"{f}\"");
    }
    let _ = write!(options, ",command=\"{}\"", forced_command.replace('"', "\\\""));
    let authorized_keys_line = client_key.map(|k| format!("{options} {}", k.line(true)));

    let known_host = if a.port == 22 { a.host.clone() } else { format!("[{}]:{}", a.host, a.port) };
    Ok(Plan {
        command: a.ssh_exe.clone(),
        arguments,
        ssh_args,
        working_directory: a.work_dir.clone(),
        custom_variables: vec![Variable { name: "driver".into(), value: a.driver.clone(), kind: "Regular" }],
        known_hosts_line: format!("{known_host} {}", host_key.line(false)),
        host_key_fingerprint: host_key.fingerprint(),
        forced_command,
        authorized_keys_options: options,
        authorized_keys_line,
    })
}

/// The human-readable instructions.
fn render(a: &InstallSshArgs, p: &Plan) -> String {
    let u = &a.user;
    let mut o = String::new();
    let level = match (a.template_method, a.link_clones) {
        (TemplateMethod::Basic, true) => "link clones".to_string(),
        (m, true) => format!("{} + link clones", m.as_str()),
        (m, false) => m.as_str().to_string(),
    };
    let _ =
        writeln!(o, "# polyvisor for Parallels RAS over SSH: {u}@{}:{} (driver {}, {level})", a.host, a.port, a.driver);
    let _ = writeln!(o);
    let _ = writeln!(o, "## 1. RAS Console: Farm > Site > Providers > Add > Custom Provider");
    let _ = writeln!(o, "Command:           {}", p.command);
    let _ = writeln!(o, "Arguments:         {}", p.arguments);
    let _ = writeln!(o, "Working directory: {}", p.working_directory);
    for v in &p.custom_variables {
        let _ = writeln!(o, "Custom variable:   {} = {} ({})", v.name, v.value, v.kind);
    }
    let _ = writeln!(o, "                   plus the {} driver's settings; mark secrets Secure. They reach", a.driver);
    let _ = writeln!(o, "                   polyvisor inside the SSH channel (provider/connect on stdin), never");
    let _ = writeln!(o, "                   on a command line. Enter the fields without surrounding quotes.");
    let _ = writeln!(o);
    let _ = writeln!(o, "## 2. RAS server (Windows), in an elevated cmd.exe, once");
    let _ = writeln!(o, "mkdir {}", p.working_directory);
    let _ = writeln!(o, "ssh-keygen -t ed25519 -N \"\" -C ras-provider -f {}", a.key_file);
    let _ = writeln!(o, "icacls {} /inheritance:r /grant:r SYSTEM:F Administrators:F", a.key_file);
    let _ = writeln!(o, "Write exactly this line to {} (the pinned host key):", a.known_hosts);
    let _ = writeln!(o, "{}", p.known_hosts_line);
    let _ = writeln!(
        o,
        "Its fingerprint is {}; compare it with `ssh-keygen -lf {}` on",
        p.host_key_fingerprint,
        a.host_key_file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| DEFAULT_HOST_KEY_FILE.into())
    );
    let _ = writeln!(o, "the Linux host. Copy {}.pub to the Linux host.", a.key_file);
    let _ = writeln!(o);
    let _ = writeln!(o, "## 3. Linux host ({}), as root, once", a.host);
    let _ = writeln!(o, "useradd --create-home --shell /bin/sh {u}   # sshd runs the forced command with `$SHELL -c`");
    let _ = writeln!(o, "passwd -l {u}                               # no password: key login only");
    let _ = writeln!(o, "install -d -m 700 -o {u} -g {u} ~{u}/.ssh");
    let _ = writeln!(o, "install -m 600 -o {u} -g {u} /dev/null ~{u}/.ssh/authorized_keys");
    let _ = writeln!(o, "Then put this one line in ~{u}/.ssh/authorized_keys:");
    match &p.authorized_keys_line {
        Some(line) => {
            let _ = writeln!(o, "{line}");
        }
        None => {
            let _ = writeln!(o, "{} <contents of {}.pub>", p.authorized_keys_options, a.key_file);
            let _ = writeln!(o, "(run again with --public-key-file <copied .pub> to get the complete line)");
        }
    }
    let _ = writeln!(o, "`restrict` turns off pty allocation and every forwarding; `command=` makes the key able");
    let _ = writeln!(o, "to run only: {}", p.forced_command);
    let _ = writeln!(o, "Optional hardening in /etc/ssh/sshd_config (then `systemctl reload ssh`):");
    let _ = writeln!(o, "Match User {u}");
    let _ = writeln!(o, "    AuthenticationMethods publickey");
    let _ = writeln!(o, "    PermitTTY no");
    let _ = writeln!(o, "    DisableForwarding yes");
    let _ = writeln!(o);
    let _ = writeln!(o, "## 4. Check it from the RAS server (cmd.exe, in {})", p.working_directory);
    let _ = writeln!(o, "echo {{\"method\":\"provider/initialize\"}} | \"{}\" {}", p.command, p.arguments);
    o
}

/// An OpenSSH public key line: type, base64 blob, optional comment.
struct PublicKey {
    kind: String,
    blob: Vec<u8>,
    b64: String,
    comment: Option<String>,
}

const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

impl PublicKey {
    fn parse(what: &str, text: &str) -> Result<PublicKey, String> {
        let mut parts = text.trim().splitn(3, [' ', '\t']);
        let kind = parts.next().unwrap_or_default().to_string();
        if !KEY_TYPES.contains(&kind.as_str()) {
            return Err(format!("{what}: expected an OpenSSH public key (`ssh-ed25519 AAAA…`), one of {KEY_TYPES:?}"));
        }
        let b64 = parts.next().unwrap_or_default().trim().to_string();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|_| format!("{what}: the key's second field is not base64"))?;
        // The blob starts with the key type as an SSH string (u32 length + bytes).
        let named = blob
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n));
        if named != Some(kind.as_bytes()) {
            return Err(format!("{what}: the key data does not match its type {kind}"));
        }
        let comment = parts.next().map(str::trim).filter(|c| !c.is_empty()).map(String::from);
        if let Some(c) = &comment {
            if c.chars().any(char::is_control) {
                return Err(format!("{what}: the key comment contains control characters"));
            }
        }
        Ok(PublicKey { kind, blob, b64, comment })
    }

    fn line(&self, with_comment: bool) -> String {
        match (&self.comment, with_comment) {
            (Some(c), true) => format!("{} {} {c}", self.kind, self.b64),
            _ => format!("{} {}", self.kind, self.b64),
        }
    }

    fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
    }
}

/// The first key line of a `.pub` file (comments and blank lines skipped).
fn read_key_file(path: &std::path::Path, flags: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {} ({e}); pass {flags}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .ok_or_else(|| format!("{} holds no public key; pass {flags}", path.display()))
}

fn check_user(u: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&u.len())
        && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && u.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err("--user must be a Linux user name (lower-case letters, digits, `_`, `-`; at most 32)".into())
    }
}

fn check_host(h: &str) -> Result<(), String> {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.len() <= 253 && h.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("--host must be a DNS name or an IP address".into())
    }
}

/// A Windows absolute path that ssh.exe reads as one value (`-i`, `-o …File=`): OpenSSH
/// splits option values on whitespace, treats quotes specially, expands `%` tokens and
/// collapses `\\`, so those are refused rather than quoted.
fn check_ssh_path(flag: &str, p: &str) -> Result<(), String> {
    check_windows_path(flag, p)?;
    let ok = p.chars().skip(3).all(|c| c.is_ascii_alphanumeric() || "\\_.-+@,".contains(c))
        && !p.contains(r"\\")
        && !p.ends_with('\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            r"{flag} must be a plain Windows path such as C:\ProgramData\polyvisor\file (letters, digits, `\_.-+@,`; no spaces, quotes or `%`)"
        ))
    }
}

/// An absolute Windows path (`X:\…`) with no characters Windows forbids.
fn check_windows_path(flag: &str, p: &str) -> Result<(), String> {
    let b = p.as_bytes();
    // The first three bytes are ASCII when `drive` holds, so `p[2..]` is on a boundary.
    let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\';
    if drive && !p.chars().any(|c| c.is_control() || "\"<>|?*".contains(c)) && !p[2..].contains(':') {
        Ok(())
    } else {
        Err(format!(r"{flag} must be an absolute Windows path (X:\…) without quotes or <>|?*:"))
    }
}

fn check_linux_path(flag: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') && !p.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!("{flag} must be an absolute path on the Linux host without control characters"))
    }
}

fn parse_env(kv: &str) -> Result<(String, String), String> {
    let (k, v) = kv.split_once('=').ok_or("--env expects KEY=VALUE (the argument had no `=`)")?;
    let key_ok = k.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !key_ok {
        return Err("--env keys must be upper-case environment names (A-Z, 0-9, _)".into());
    }
    const SECRET: [&str; 6] = ["SECRET", "PASSWORD", "PASSWD", "TOKEN", "TICKET", "CREDENTIAL"];
    if SECRET.iter().any(|s| k.contains(s)) {
        return Err(format!(
            "--env {k}: looks like a secret; pass secrets as Secure RAS custom variables (provider/connect), \
             never in authorized_keys or on a command line"
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("--env {k}: the value contains control characters"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn check_from(f: &str) -> Result<(), String> {
    if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || ".:*?!,/-_".contains(c)) {
        Ok(())
    } else {
        Err("--from must be an OpenSSH address pattern list (e.g. 10.0.0.5 or 10.0.0.0/24,!10.0.0.9)".into())
    }
}

/// POSIX shell quoting: plain words stay as they are, anything else is single-quoted.
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Quotes one argument so the Microsoft C runtime (`CommandLineToArgvW` rules, which
/// ssh.exe uses) reads it back unchanged.
pub fn windows_quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\x0b', '"']) {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(2 * backslashes + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(2 * backslashes));
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(args_override_self = true)]
    struct Cli {
        #[command(flatten)]
        a: InstallSshArgs,
    }

    const HOST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2makWzYbKDvXIni0BpAX48evsNX2m129P9KUAC5rqL root@pve";
    const CLIENT_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFWRid9jGkxByN6+Ob70fHZL4yu4LNLx3UQ1h3LIIey ras-provider";
    const DRIVERS: [&str; 3] = ["sim", "proxmox", "libvirt"];

    fn args(extra: &[&str]) -> InstallSshArgs {
        let mut v = vec!["x", "--user", "pvras", "--host", "linux.lab", "--driver", "proxmox", "--host-key", HOST_KEY];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).expect("parses").a
    }

    fn err(extra: &[&str]) -> String {
        plan(&args(extra), &DRIVERS).expect_err("must be refused")
    }

    /// Reads a Windows command line back the way the Microsoft C runtime does.
    fn windows_split(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek().is_none() {
                return out;
            }
            let (mut arg, mut quoted) = (String::new(), false);
            while let Some(&c) = chars.peek() {
                if !quoted && (c == ' ' || c == '\t') {
                    break;
                }
                chars.next();
                match c {
                    '\\' => {
                        let mut n = 1;
                        while chars.peek() == Some(&'\\') {
                            chars.next();
                            n += 1;
                        }
                        if chars.peek() == Some(&'"') {
                            arg.push_str(&"\\".repeat(n / 2));
                            if n % 2 == 1 {
                                arg.push('"');
                                chars.next();
                            }
                        } else {
                            arg.push_str(&"\\".repeat(n));
                        }
                    }
                    '"' => quoted = !quoted,
                    _ => arg.push(c),
                }
            }
            out.push(arg);
        }
    }

    #[test]
    fn text_output_snapshot() {
        let a =
            args(&["--template-method", "basic", "--link-clones", "--public-key", CLIENT_KEY, "--from", "10.0.0.5"]);
        let p = plan(&a, &DRIVERS).expect("valid");
        insta::assert_snapshot!("install_ssh_text", render(&a, &p));
    }

    #[test]
    fn json_output_snapshot_with_env_log_file_and_port() {
        let a = args(&[
            "--port",
            "2222",
            "--env",
            "POLYVISOR_SIM_DB=/var/lib/pv ras/it's \"db\".sqlite",
            "--remote-log-file",
            "/var/log/polyvisor/ras.log",
            "--polyvisor-path",
            "/opt/poly visor/polyvisor",
        ]);
        let p = plan(&a, &DRIVERS).expect("valid");
        insta::assert_json_snapshot!("install_ssh_json", p);
    }

    #[test]
    fn arguments_round_trip_through_windows_rules() {
        let p = plan(&args(&["--port", "2022"]), &DRIVERS).unwrap();
        assert_eq!(windows_split(&p.arguments), p.ssh_args);
        for must in
            ["-T", "BatchMode=yes", "StrictHostKeyChecking=yes", "ServerAliveInterval=15", "ServerAliveCountMax=3"]
        {
            assert!(p.ssh_args.iter().any(|a| a == must), "{must} missing: {:?}", p.ssh_args);
        }
        let i = p.ssh_args.iter().position(|a| a == "-i").unwrap();
        assert_eq!(p.ssh_args[i + 1], r"C:\ProgramData\polyvisor\ras_ed25519");
        assert!(p.ssh_args.contains(&r"UserKnownHostsFile=C:\ProgramData\polyvisor\known_hosts".to_string()));
        assert_eq!(p.ssh_args.last().unwrap(), "pvras@linux.lab");
        assert_eq!(
            p.known_hosts_line,
            "[linux.lab]:2022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2makWzYbKDvXIni0BpAX48evsNX2m129P9KUAC5rqL"
        );
    }

    #[test]
    fn windows_quoting_follows_the_c_runtime() {
        for s in
            ["plain", "", "a b", r"C:\Program Files\x", r#"say "hi""#, r"trail\", r"tr ail\\", r#"\\"\""#, "tab\there"]
        {
            let q = windows_quote(s);
            assert_eq!(
                windows_split(&format!("x {q} y")),
                vec!["x".to_string(), s.to_string(), "y".to_string()],
                "{q}"
            );
        }
        assert_eq!(windows_quote(r"C:\a\b"), r"C:\a\b");
        assert_eq!(windows_quote(r"C:\a b\"), r#""C:\a b\\""#);
    }

    #[test]
    fn forced_command_quoting_survives_sh_and_authorized_keys() {
        assert_eq!(sh_quote("/usr/local/bin/polyvisor"), "/usr/local/bin/polyvisor");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a;rm -rf /"), "'a;rm -rf /'");
        let p = plan(&args(&["--env", r#"POLYVISOR_SIM_DB=/x/"q"\z"#, "--public-key", CLIENT_KEY]), &DRIVERS).unwrap();
        assert_eq!(
            p.forced_command,
            r#"POLYVISOR_SIM_DB='/x/"q"\z' /usr/local/bin/polyvisor ras --driver proxmox --template-method versioning"#
        );
        // OpenSSH's option parser: inside command="…" only \" is an escape.
        let line = p.authorized_keys_line.unwrap();
        let inner = line.strip_prefix("restrict,command=\"").unwrap();
        let (mut dequoted, mut rest) = (String::new(), inner.chars().peekable());
        while let Some(c) = rest.next() {
            match c {
                '\\' if rest.peek() == Some(&'"') => dequoted.push(rest.next().unwrap()),
                '"' => break,
                _ => dequoted.push(c),
            }
        }
        assert_eq!(dequoted, p.forced_command);
        assert_eq!(rest.collect::<String>(), format!(" {CLIENT_KEY}"));
    }

    #[test]
    fn bad_inputs_are_refused_without_echoing_secrets() {
        assert!(err(&["--user", "Root"]).contains("--user"));
        assert!(err(&["--user", "a b"]).contains("--user"));
        assert!(err(&["--host=-oProxyCommand=x"]).contains("--host"));
        assert!(err(&["--host", "a b"]).contains("--host"));
        assert!(err(&["--driver", "vmware"]).contains("sim, proxmox, libvirt"));
        assert!(err(&["--key-file", r"C:\Program Files\k"]).contains("--key-file"));
        assert!(err(&["--key-file", r"C:\%USERPROFILE%\k"]).contains("--key-file"));
        assert!(err(&["--key-file", r"\\server\share\k"]).contains("--key-file"));
        assert!(err(&["--known-hosts", "/etc/ssh/known_hosts"]).contains("--known-hosts"));
        assert!(err(&["--work-dir", "C:\\a\"b"]).contains("--work-dir"));
        assert!(err(&["--work-dir", "€x"]).contains("--work-dir"));
        assert!(err(&["--ssh-exe", "C:\\a:b"]).contains("--ssh-exe"));
        assert!(err(&["--polyvisor-path", "polyvisor"]).contains("--polyvisor-path"));
        assert!(err(&["--remote-log-file", "/var/log/a\nb"]).contains("--remote-log-file"));
        assert!(err(&["--env", "POLYVISOR_X=a\nb"]).contains("control"));
        assert!(err(&["--env", "lower=x"]).contains("upper-case"));
        assert!(err(&["--env", "NOEQUALS"]).contains("KEY=VALUE"));
        let e = err(&["--env", "PVE_TOKEN_SECRET=hunter22"]);
        assert!(e.contains("Secure") && !e.contains("hunter22"), "{e}");
        assert!(err(&["--from", "a\" b"]).contains("--from"));
        assert!(err(&["--template-method", "none", "--link-clones"]).contains("--link-clones"));
        assert!(err(&["--public-key", "ssh-ed25519 not-base64!"]).contains("base64"));
        // ed25519 type with an RSA blob.
        assert!(err(&["--public-key", "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC2hP5rc2yPvIxSQg/ANp2a"])
            .contains("does not match"));
        let missing = plan(
            &Cli::try_parse_from([
                "x",
                "--user",
                "u",
                "--host",
                "h",
                "--driver",
                "sim",
                "--host-key-file",
                "/nonexistent.pub",
            ])
            .unwrap()
            .a,
            &DRIVERS,
        )
        .unwrap_err();
        assert!(missing.contains("--host-key"), "{missing}");
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // `ssh-keygen -lf` of HOST_KEY.
        let k = PublicKey::parse("k", HOST_KEY).unwrap();
        assert_eq!(k.fingerprint(), "SHA256:rytsTJWJKpPuQh/9H4PBl8qyxyC0lnJA5f0axwt6VQQ");
    }

    #[test]
    fn without_public_key_the_line_is_absent_and_text_says_how() {
        let a = args(&[]);
        let p = plan(&a, &DRIVERS).unwrap();
        assert!(p.authorized_keys_line.is_none());
        let text = render(&a, &p);
        assert!(text.contains("--public-key-file"), "{text}");
        assert!(text.contains(r"<contents of C:\ProgramData\polyvisor\ras_ed25519.pub>"));
    }
}
