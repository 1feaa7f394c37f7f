//! The tiny libvirt test guest (`testing/tiny-guest/`): its build directory, its domain
//! definition rendered from the repository's `domain.xml.tmpl` (every value XML-escaped), and
//! `virsh` helpers to define/remove copies of it in the `polyvisor` pool.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's domain template (`testing/tiny-guest/domain.xml.tmpl`).
pub const DOMAIN_TEMPLATE: &str = include_str!("../../../testing/tiny-guest/domain.xml.tmpl");
/// libvirt URI the tests use.
pub const URI: &str = "qemu:///system";
/// The pool `scripts/ci/start-libvirt.sh` defines.
pub const POOL: &str = "polyvisor";
/// The network `scripts/ci/start-libvirt.sh` defines.
pub const NETWORK: &str = "tg-net";
/// What to run when something is missing.
pub const HINT: &str = "run scripts/ci/start-libvirt.sh (as root) first";

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// A built tiny guest (the directory `testing/tiny-guest/build.sh OUTDIR` filled).
#[derive(Clone, Debug)]
pub struct TinyGuest {
    /// The build directory (`vmlinuz`, `initrd.img`, `template.qcow2`).
    pub dir: PathBuf,
    /// Directory of the `polyvisor` pool, where copies of the disk go.
    pub pool_dir: PathBuf,
}

/// Values for one domain.
#[derive(Clone, Debug)]
pub struct DomainParams {
    /// Domain name.
    pub name: String,
    /// Guest RAM in MiB (96 is the smallest that boots; 128 is comfortable).
    pub mem_mib: u32,
    /// Disk image path.
    pub disk: PathBuf,
    /// libvirt network.
    pub network: String,
    /// Serial log file.
    pub serial_log: String,
    /// Extra kernel arguments (e.g. `tg.hostname=NAME`).
    pub cmdline_extra: String,
}

impl DomainParams {
    /// The usual values: 128 MiB, network `tg-net`, serial log under /var/log/libvirt/qemu.
    pub fn new(name: &str, disk: impl Into<PathBuf>) -> Self {
        DomainParams {
            name: name.to_string(),
            mem_mib: 128,
            disk: disk.into(),
            network: NETWORK.to_string(),
            serial_log: format!("/var/log/libvirt/qemu/{name}-serial.log"),
            cmdline_extra: String::new(),
        }
    }
}

impl TinyGuest {
    /// The guest `scripts/ci/start-libvirt.sh` built: `POLYVISOR_TINY_DIR` (default
    /// `/var/lib/polyvisor-tiny`) and `POLYVISOR_POOL_DIR` (default `/var/lib/polyvisor-pool`).
    pub fn from_env() -> Self {
        let env = |k: &str, d: &str| std::env::var_os(k).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(d));
        Self::new(
            env("POLYVISOR_TINY_DIR", "/var/lib/polyvisor-tiny"),
            env("POLYVISOR_POOL_DIR", "/var/lib/polyvisor-pool"),
        )
    }

    /// A guest built into `dir`, copies going to `pool_dir`.
    pub fn new(dir: impl Into<PathBuf>, pool_dir: impl Into<PathBuf>) -> Self {
        TinyGuest { dir: dir.into(), pool_dir: pool_dir.into() }
    }

    /// Whether the build output is there.
    pub fn is_built(&self) -> bool {
        ["vmlinuz", "initrd.img", "template.qcow2"].iter().all(|f| self.dir.join(f).is_file())
    }

    /// Panics with the start-script hint when the build output is missing.
    pub fn require(&self) -> &Self {
        assert!(self.is_built(), "tiny guest missing in {}; {HINT}", self.dir.display());
        self
    }

    /// The domain XML for `p` (template placeholders replaced by escaped values).
    pub fn domain_xml(&self, p: &DomainParams) -> String {
        let path = |f: &str| xml_escape(&self.dir.join(f).to_string_lossy());
        DOMAIN_TEMPLATE
            .replace("@NAME@", &xml_escape(&p.name))
            .replace("@MEM_MIB@", &p.mem_mib.to_string())
            .replace("@VMLINUZ@", &path("vmlinuz"))
            .replace("@INITRD@", &path("initrd.img"))
            .replace("@CMDLINE_EXTRA@", &xml_escape(&p.cmdline_extra))
            .replace("@DISK@", &xml_escape(&p.disk.to_string_lossy()))
            .replace("@NETWORK@", &xml_escape(&p.network))
            .replace("@SERIAL_LOG@", &xml_escape(&p.serial_log))
    }

    /// Defines domain `name` (replacing a domain of that name) on a fresh copy of the
    /// template disk in the pool directory (`<pool_dir>/<name>.qcow2`); returns its UUID.
    pub fn define_copy(&self, name: &str) -> Result<String, String> {
        self.define_copy_with(&DomainParams::new(name, self.pool_dir.join(format!("{name}.qcow2"))))
    }

    /// As [`TinyGuest::define_copy`] with explicit domain values (`p.disk` receives the copy).
    pub fn define_copy_with(&self, p: &DomainParams) -> Result<String, String> {
        if !self.is_built() {
            return Err(format!("tiny guest missing in {}; {HINT}", self.dir.display()));
        }
        undefine(&p.name);
        std::fs::copy(self.dir.join("template.qcow2"), &p.disk)
            .map_err(|e| format!("copy tiny disk to {}: {e}", p.disk.display()))?;
        let tmp = crate::temp::dir("domxml");
        let f = tmp.path().join(format!("{}.xml", p.name));
        std::fs::write(&f, self.domain_xml(p)).map_err(|e| e.to_string())?;
        virsh(&["define", &f.to_string_lossy()])?;
        let _ = virsh(&["pool-refresh", POOL]);
        virsh(&["domuuid", &p.name])
    }
}

/// Runs `virsh -c qemu:///system ARGS`; trimmed stdout, or stderr as the error.
pub fn virsh(args: &[&str]) -> Result<String, String> {
    let o = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .map_err(|e| format!("virsh missing ({e}); {HINT}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!("virsh {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// Stops and undefines domain `name` with its snapshot metadata (missing is fine); its disk
/// file is left alone.
pub fn undefine(name: &str) {
    if virsh(&["domuuid", name]).is_ok() {
        let _ = virsh(&["destroy", name]);
        let _ = virsh(&["undefine", name, "--snapshots-metadata"]);
    }
}

/// Removes domain `name`, its disk `<pool_dir>/<name>.qcow2` and the snapshot bases polyvisor
/// exported from it (`pvbase-<uuid8>-*`).
pub fn remove_copy(name: &str, uuid: &str, pool_dir: &Path) {
    let prefix = format!("pvbase-{}-", uuid.get(..8).unwrap_or(uuid));
    for v in pool_volumes().into_iter().filter(|v| v.starts_with(&prefix)) {
        let _ = virsh(&["vol-delete", &v, "--pool", POOL]);
    }
    undefine(name);
    let _ = std::fs::remove_file(pool_dir.join(format!("{name}.qcow2")));
    let _ = virsh(&["pool-refresh", POOL]);
}

/// Volume names in the `polyvisor` pool, sorted (after a refresh).
pub fn pool_volumes() -> Vec<String> {
    let _ = virsh(&["pool-refresh", POOL]);
    let mut v: Vec<String> = virsh(&["vol-list", POOL])
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_rendered_with_escaped_values() {
        let t = TinyGuest::new("/tiny", "/pool");
        let mut p = DomainParams::new("g<1>&\"x\"", "/pool/a'b.qcow2");
        p.cmdline_extra = "tg.hostname=g1".into();
        let x = t.domain_xml(&p);
        assert!(!x.contains('@'), "every placeholder replaced: {x}");
        assert!(x.contains("<name>g&lt;1&gt;&amp;&quot;x&quot;</name>"), "{x}");
        assert!(x.contains("<source file='/pool/a&apos;b.qcow2'/>"), "{x}");
        assert!(x.contains("<kernel>/tiny/vmlinuz</kernel>") && x.contains("tg.hostname=g1"), "{x}");
        assert!(x.contains("<source network='tg-net'/>"));
    }
}
