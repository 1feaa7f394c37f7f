//! Temporary directories named after the test that made them (removed on drop).

use std::path::Path;

/// A fresh temporary directory `polyvisor-<tag>-XXXX` under the system temp dir, removed
/// when the returned value drops.
pub fn dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("polyvisor-{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for {tag}: {e}"))
}

/// As [`dir`], but readable and traversable by other users (mode 0755), for files a daemon
/// running as another user must open (libvirt's QEMU runs as `libvirt-qemu`).
pub fn shared_dir(tag: &str) -> tempfile::TempDir {
    let d = dir(tag);
    make_traversable(d.path());
    d
}

#[cfg(unix)]
fn make_traversable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
}

#[cfg(not(unix))]
fn make_traversable(_: &Path) {}

#[cfg(test)]
mod tests {
    #[test]
    fn dirs_are_fresh_and_removed() {
        let a = super::dir("t");
        let b = super::dir("t");
        assert_ne!(a.path(), b.path());
        assert!(a.path().file_name().unwrap().to_string_lossy().starts_with("polyvisor-t-"));
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }
}
