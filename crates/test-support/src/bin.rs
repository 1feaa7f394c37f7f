//! The repository root and the binaries cargo built.

use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `crates/test-support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A file inside the repository, e.g. `repo_path("scripts/ci/fakepve-launcher.py")`.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// The `bin/` directory of a project Python venv made by `scripts/ci/<name>.sh` (location:
/// environment variable `env_var`, default `target/<name>` in the repository), when it holds
/// `tool`. Missing: `None` with a SKIP message, except in CI (`CI=true`), where it panics
/// naming the script, so a CI run never skips what the venv proves.
pub fn venv_bin(env_var: &str, name: &str, tool: &str) -> Option<PathBuf> {
    let venv = std::env::var_os(env_var).map(PathBuf::from).unwrap_or_else(|| repo_path(&format!("target/{name}")));
    let bin = venv.join("bin");
    if bin.join(tool).exists() {
        return Some(bin);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "the {name} venv is missing: run scripts/ci/{name}.sh");
    eprintln!("SKIP: no {name} venv (run scripts/ci/{name}.sh)");
    None
}

/// The cargo target directory the running test binary lives in (`target/debug/deps/x-hash`
/// → `target/debug`), so a test finds sibling binaries of the same profile.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// A built binary of this workspace (`polyvisor`, `polyvisor-bench`). Prefer
/// `env!("CARGO_BIN_EXE_<name>")` inside the crate that defines the binary; this is for
/// other crates' tests. Panics with the build command when it is missing.
pub fn built(name: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let p = profile_dir().join(&file);
    assert!(p.exists(), "{} not found: build it first (cargo build --workspace --all-features --bins)", p.display());
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_holds_the_workspace() {
        assert!(super::repo_path("Cargo.toml").exists());
        assert!(super::repo_path("scripts/ci/fakepve-launcher.py").exists());
        assert!(super::repo_path("testing/tiny-guest/domain.xml.tmpl").exists());
    }
}
