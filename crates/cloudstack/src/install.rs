//! `polyvisor cloudstack install`: writes the extension directory CloudStack expects
//! (spec §1.5: `<root>/<safe>/<safe>.sh`, `safe` = the name with characters outside
//! `[a-zA-Z0-9._-]` replaced by `_`, lower-cased) holding a `#!/bin/sh` entry file that
//! `exec`s this binary with `--config <dir>/polyvisor.json`, plus that config; then prints
//! the CloudMonkey commands that register it.

use crate::action::Custom;
use polyvisor_core::{Capabilities, DriverFactory, Settings};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default extensions root of a packaged management server.
pub const DEFAULT_ROOT: &str = "/usr/share/cloudstack-management/extensions";

/// Name of the config file written next to the entry file.
pub const CONFIG_FILE: &str = "polyvisor.json";

/// `polyvisor cloudstack install` options.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Extension name (as given to `createExtension name=…`).
    #[arg(long)]
    pub name: String,
    /// Driver the extension uses (`sim`, `proxmox`, `libvirt`); stored as `driver` in the config.
    #[arg(long, default_value = "sim")]
    pub driver: String,
    /// Extensions root directory.
    #[arg(long, default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Default setting written to the config file, KEY=VALUE; repeatable. Lowest priority:
    /// any `externaldetails` level of a payload overrides it.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub set: Vec<(String, String)>,
    /// The polyvisor binary the entry file runs (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Log file the entry file passes as `--log-file` (default: no logging).
    #[arg(long, value_name = "FILE")]
    pub log_to: Option<PathBuf>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".to_string()),
    }
}

/// The directory and file name CloudStack derives from an extension name.
pub fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Single-quotes a string for `/bin/sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The entry-file script.
pub fn wrapper_script(binary: &Path, config: &Path, log_to: Option<&Path>) -> String {
    let log = log_to.map(|p| format!(" --log-file {}", sh_quote(&p.display().to_string()))).unwrap_or_default();
    format!(
        "#!/bin/sh\n# CloudStack extension entry file written by `polyvisor cloudstack install`.\nexec {}{log} cloudstack --config {} \"$@\"\n",
        sh_quote(&binary.display().to_string()),
        sh_quote(&config.display().to_string()),
    )
}

/// Runs the installer; human output on stdout, errors on stderr.
pub fn run(args: InstallArgs, factory: Arc<dyn DriverFactory>) -> std::process::ExitCode {
    match install(&args, factory) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "polyvisor cloudstack install: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes the extension directory and returns the text to print.
pub fn install(args: &InstallArgs, factory: Arc<dyn DriverFactory>) -> Result<String, String> {
    let safe = safe_name(args.name.trim());
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        return Err("--name must contain at least one letter or digit".into());
    }
    let mut settings = Map::new();
    settings.insert("driver".into(), Value::String(args.driver.clone()));
    for (k, v) in &args.set {
        settings.insert(k.clone(), Value::String(v.clone()));
    }
    let settings_value = Value::Object(settings);
    let caps = capabilities(&settings_value, factory)?;

    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?,
    };
    let binary = std::fs::canonicalize(&binary).map_err(|e| format!("binary {}: {e}", binary.display()))?;
    let root = absolute(&args.root)?;
    let dir = root.join(&safe);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let config_path = dir.join(CONFIG_FILE);
    let entry = dir.join(format!("{safe}.sh"));
    let config_text = serde_json::to_string_pretty(&settings_value).map_err(|e| e.to_string())? + "\n";
    write_atomic(&config_path, config_text.as_bytes(), 0o640)?;
    write_atomic(&entry, wrapper_script(&binary, &config_path, args.log_to.as_deref()).as_bytes(), 0o755)?;
    let owner = chown_to_cloud(&[&dir, &config_path, &entry]);

    let mut out = String::new();
    let _ = writeln!(out, "Installed CloudStack extension {:?} (driver {}):", args.name, args.driver);
    let _ = writeln!(out, "  entry file: {}", entry.display());
    let _ = writeln!(out, "  config:     {}", config_path.display());
    let _ = writeln!(out, "  owner:      {owner}");
    let _ = writeln!(out, "Copy the directory to every management server (identical files), then register it:\n");
    out.push_str(&cloudmonkey(&args.name, &safe, Some(&caps)));
    Ok(out)
}

/// The driver's capabilities from the config settings, credential-free and without I/O
/// ([`DriverFactory::capabilities`]): what the driver really supports, even when the
/// settings name no host yet.
fn capabilities(settings: &Value, factory: Arc<dyn DriverFactory>) -> Result<Capabilities, String> {
    let settings = Settings::from_json(settings).map_err(|e| e.message().to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let caps = rt.block_on(factory.capabilities(&settings, &polyvisor_core::OpenOptions::default()));
    rt.shutdown_background();
    caps.map_err(|e| format!("cannot tell what the driver supports: {}", e.message()))
}

/// The custom actions worth declaring for a driver (all of them when unknown).
pub fn offered_actions(caps: Option<&Capabilities>) -> Vec<Custom> {
    Custom::ALL
        .into_iter()
        .filter(|c| match (caps, c) {
            (None, _) => true,
            (Some(k), Custom::Suspend | Custom::Resume) => k.suspend,
            (Some(k), _) => k.snapshots,
        })
        .collect()
}

/// Quotes one `cmk` argument for `/bin/sh` when it holds anything but `[A-Za-z0-9._,/=-]`
/// (`<PLACEHOLDER>`s included: `<` is a redirection), so a pasted command never runs code.
pub fn sh_arg(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "._,/=-".contains(c)) {
        arg.to_string()
    } else {
        sh_quote(arg)
    }
}

/// One `cmk` command line: every argument shell-quoted as needed.
fn cmk(args: &[String]) -> String {
    let mut line = String::from("cmk");
    for a in args {
        line.push(' ');
        line.push_str(&sh_arg(a));
    }
    line.push('\n');
    line
}

/// `["a", "b=c"]` helper.
fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The CloudMonkey registration commands (every value shell-quoted).
pub fn cloudmonkey(name: &str, safe: &str, caps: Option<&Capabilities>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# 1. the extension (prepare reports the backend id as a VM detail)");
    let mut a = argv(&["create", "extension"]);
    a.push(format!("name={name}"));
    a.extend(argv(&["type=Orchestrator"]));
    a.push(format!("path={safe}/{safe}.sh"));
    a.extend(argv(&["orchestratorrequirespreparevm=true", "state=Enabled"]));
    out.push_str(&cmk(&a));
    let _ = writeln!(out, "# 2. a cluster registered to it (cluster-level details apply to all its hosts)");
    let mut a = argv(&[
        "add",
        "cluster",
        "hypervisor=External",
        "clustertype=CloudManaged",
        "zoneid=<ZONE_ID>",
        "podid=<POD_ID>",
    ]);
    a.push(format!("clustername={safe}-cluster"));
    a.push("extensionid=<EXTENSION_ID>".into());
    out.push_str(&cmk(&a));
    let _ = writeln!(
        out,
        "# 3. a host; put per-host settings (e.g. node, network_bridge, url, user, token, secret) in externaldetails"
    );
    let mut a =
        argv(&["add", "host", "clusterid=<CLUSTER_ID>", "podid=<POD_ID>", "zoneid=<ZONE_ID>", "hypervisor=External"]);
    a.push(format!("url={safe}-host1"));
    a.extend(argv(&[
        "username=External",
        "password=External",
        "externaldetails[0].key=node",
        "externaldetails[0].value=<NODE>",
    ]));
    out.push_str(&cmk(&a));
    let _ = writeln!(out, "# 4. a template (template_id = the backend template's id; for ISO installs use template_type=iso and iso_path)");
    let mut a = argv(&["register", "template", "hypervisor=External", "format=External"]);
    a.push(format!("url={safe}"));
    a.extend(argv(&["extensionid=<EXTENSION_ID>", "zoneid=<ZONE_ID>", "ostypeid=<OS_TYPE_ID>"]));
    a.push(format!("name={safe}-template"));
    a.push(format!("displaytext={safe}-template"));
    a.extend(argv(&[
        "externaldetails[0].key=template_type",
        "externaldetails[0].value=template",
        "externaldetails[1].key=template_id",
        "externaldetails[1].value=<BACKEND_TEMPLATE_ID>",
    ]));
    out.push_str(&cmk(&a));
    let actions = offered_actions(caps);
    if !actions.is_empty() {
        let _ = writeln!(out, "# 5. custom actions (enable them; timeout 60 s like the built-ins)");
    }
    for act in actions {
        let mut a = argv(&["add", "customaction", "extensionid=<EXTENSION_ID>"]);
        a.push(format!("name={}", act.name()));
        a.extend(argv(&[
            "resourcetype=VirtualMachine",
            "allowedroletypes=Admin,ResourceAdmin,DomainAdmin,User",
            "timeout=60",
            "enabled=true",
        ]));
        for (i, (pname, ptype, required)) in parameters(act).iter().enumerate() {
            a.push(format!("parameters[{i}].name={pname}"));
            a.push(format!("parameters[{i}].type={ptype}"));
            a.push(format!("parameters[{i}].required={required}"));
        }
        out.push_str(&cmk(&a));
    }
    out
}

/// Declared parameters of a custom action: (name, type, required).
pub fn parameters(action: Custom) -> &'static [(&'static str, &'static str, bool)] {
    match action {
        Custom::CreateSnapshot => &[
            ("snap_name", "STRING", true),
            ("snap_description", "STRING", false),
            ("snap_save_memory", "BOOLEAN", false),
        ],
        Custom::RestoreSnapshot | Custom::DeleteSnapshot => &[("snap_name", "STRING", true)],
        Custom::ListSnapshots | Custom::Suspend | Custom::Resume => &[],
    }
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        std::env::current_dir().map(|d| d.join(p)).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
    }
}

/// Writes via a temporary file and rename, so a running management server never sees a
/// half-written entry file.
#[cfg(unix)]
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp-polyvisor");
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Not Unix: the entry file is a `/bin/sh` script with Unix modes (0755 entry, 0640
/// config) for a Linux CloudStack management server, so refuse before writing anything.
#[cfg(not(unix))]
fn write_atomic(path: &Path, _bytes: &[u8], _mode: u32) -> Result<(), String> {
    Err(format!(
        "cannot write {}: `polyvisor cloudstack install` writes a /bin/sh entry file with Unix file modes; \
         run it on the (Linux) CloudStack management server",
        path.display()
    ))
}

/// Not Unix: there is no `cloud` user to give the files to.
#[cfg(not(unix))]
fn chown_to_cloud(_paths: &[&Path]) -> String {
    "unchanged (not a Unix system)".into()
}

/// Gives the files to the `cloud` user (the management server's), when it exists and we may.
#[cfg(unix)]
fn chown_to_cloud(paths: &[&Path]) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == "cloud").then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?))).flatten()
    });
    let Some((uid, gid)) = ids else {
        return "unchanged (no `cloud` user here; chown cloud:cloud on the management server)".into();
    };
    for p in paths {
        if std::os::unix::fs::chown(p, Some(uid), Some(gid)).is_err() {
            return "unchanged (chown to cloud:cloud failed; do it as root)".into();
        }
    }
    "cloud:cloud".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_follow_cloudstack() {
        assert_eq!(safe_name("Polyvisor"), "polyvisor");
        assert_eq!(safe_name("My Ext/1"), "my_ext_1");
        assert_eq!(safe_name("a.b-c_D"), "a.b-c_d");
    }

    #[test]
    fn wrapper_quotes_paths() {
        let w = wrapper_script(Path::new("/opt/pv it's/polyvisor"), Path::new("/e/x/polyvisor.json"), None);
        assert!(w.starts_with("#!/bin/sh\n"));
        assert!(
            w.contains("exec '/opt/pv it'\\''s/polyvisor' cloudstack --config '/e/x/polyvisor.json' \"$@\""),
            "{w}"
        );
        let w = wrapper_script(Path::new("/b"), Path::new("/c"), Some(Path::new("/var/log/pv.log")));
        assert!(w.contains("exec '/b' --log-file '/var/log/pv.log' cloudstack --config '/c' \"$@\""), "{w}");
    }

    #[test]
    fn cloudmonkey_declares_typed_parameters() {
        let text = cloudmonkey("Polyvisor", "polyvisor", None);
        assert!(text.contains("cmk create extension name=Polyvisor type=Orchestrator path=polyvisor/polyvisor.sh orchestratorrequirespreparevm=true"));
        assert!(text.contains("name=CreateSnapshot"));
        assert!(text.contains(
            "'parameters[2].name=snap_save_memory' 'parameters[2].type=BOOLEAN' 'parameters[2].required=false'"
        ));
        assert!(text.contains("'zoneid=<ZONE_ID>'"), "placeholders are quoted (`<` redirects): {text}");
        assert!(text.contains("name=Suspend"));
        let caps = Capabilities { snapshots: true, ..Capabilities::default() };
        let text = cloudmonkey("X", "x", Some(&caps));
        assert!(text.contains("name=ListSnapshots") && !text.contains("name=Suspend"));
        assert!(!cloudmonkey("X", "x", Some(&Capabilities::default())).contains("customaction"));
    }

    /// Runs every printed `cmk` line through bash with `cmk` replaced by a function that
    /// prints its arguments one per line; returns the argument lists.
    fn run_printed_commands(text: &str, probe: &std::path::Path) -> Vec<Vec<String>> {
        let mut script = String::from("cmk() { printf '%s\\n' \"$@\"; echo ---; }\n");
        for line in text.lines().filter(|l| l.starts_with("cmk ")) {
            script.push_str(line);
            script.push('\n');
        }
        let dir = probe.parent().unwrap();
        let out =
            std::process::Command::new("bash").arg("-c").arg(&script).current_dir(dir).output().expect("bash runs");
        assert!(out.status.success(), "bash failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut cmds = vec![vec![]];
        for l in String::from_utf8(out.stdout).unwrap().lines() {
            if l == "---" {
                cmds.push(vec![]);
            } else {
                cmds.last_mut().unwrap().push(l.to_string());
            }
        }
        cmds.pop();
        cmds
    }

    #[test]
    fn printed_commands_are_shell_safe() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("pwned");
        let name = format!("a\"b$(touch {p})`touch {p}`'; touch {p} #", p = probe.display());
        let text = cloudmonkey(&name, &safe_name(&name), None);
        // Syntax check first, then a real run with a harmless `cmk`.
        let syntax = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(text.lines().filter(|l| l.starts_with("cmk ")).collect::<Vec<_>>().join("\n"))
            .status()
            .unwrap();
        assert!(syntax.success());
        let cmds = run_printed_commands(&text, &probe);
        assert!(!probe.exists(), "pasting the printed commands ran code");
        assert_eq!(cmds[0][2], format!("name={name}"), "the name reaches cmk unchanged");
        assert!(cmds[1].contains(&"zoneid=<ZONE_ID>".to_string()));
        assert!(cmds.iter().any(|c| c.contains(&"parameters[0].name=snap_name".to_string())));
        assert!(dir.path().read_dir().unwrap().next().is_none(), "no redirection created files");
    }

    #[test]
    fn install_offers_only_what_the_factory_says_without_credentials() {
        use polyvisor_core::{Driver, Result};
        /// A factory whose `open` needs credentials (like Proxmox without a host) but
        /// whose credential-free capabilities say: snapshots only.
        struct NeedsHost;
        #[async_trait::async_trait]
        impl DriverFactory for NeedsHost {
            async fn open(&self, _: &Settings, _: &polyvisor_core::OpenOptions) -> Result<Arc<dyn Driver>> {
                Err(polyvisor_core::Error::invalid("missing host"))
            }
            async fn capabilities(&self, _: &Settings, _: &polyvisor_core::OpenOptions) -> Result<Capabilities> {
                Ok(Capabilities { snapshots: true, ..Capabilities::default() })
            }
            fn driver_names(&self) -> Vec<&'static str> {
                vec!["needs-host"]
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let args = InstallArgs {
            name: "p".into(),
            driver: "needs-host".into(),
            root: dir.path().to_path_buf(),
            set: vec![],
            binary: Some(PathBuf::from("/bin/sh")),
            log_to: None,
        };
        let text = install(&args, Arc::new(NeedsHost)).unwrap();
        assert!(text.contains("name=ListSnapshots"), "{text}");
        assert!(!text.contains("name=Suspend") && !text.contains("name=Resume"), "{text}");
    }

    #[test]
    #[cfg(unix)]
    fn install_writes_entry_and_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let args = InstallArgs {
            name: "Poly Visor".into(),
            driver: "fake".into(),
            root: dir.path().to_path_buf(),
            set: vec![("node".into(), "pve1".into()), ("secret".into(), "a=b".into())],
            binary: Some(PathBuf::from("/bin/sh")),
            log_to: None,
        };
        let text = install(
            &args,
            polyvisor_test_support::fake::FakeFactory::empty(polyvisor_test_support::fake::create_caps()),
        )
        .unwrap();
        let entry = dir.path().join("poly_visor/poly_visor.sh");
        let config = dir.path().join("poly_visor/polyvisor.json");
        assert!(text.contains(&entry.display().to_string()));
        assert!(!text.contains("a=b"), "settings values are not printed");
        assert_eq!(std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o640);
        let v: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"driver": "fake", "node": "pve1", "secret": "a=b"}));
        let loaded = crate::config::load_file(&config).unwrap();
        assert_eq!(loaded.str("secret").as_deref(), Some("a=b"));
        let script = std::fs::read_to_string(&entry).unwrap();
        assert!(script.contains(&format!("cloudstack --config '{}' \"$@\"", config.display())), "{script}");
        // Re-install overwrites in place.
        assert!(install(
            &args,
            polyvisor_test_support::fake::FakeFactory::empty(polyvisor_test_support::fake::create_caps())
        )
        .is_ok());
        let bad = InstallArgs { name: " ".into(), ..args };
        assert!(install(
            &bad,
            polyvisor_test_support::fake::FakeFactory::empty(polyvisor_test_support::fake::create_caps())
        )
        .unwrap_err()
        .contains("--name"));
    }
}
