//! Snapshots (insta) of the built binary's `--help` for every subcommand, found by
//! walking the "Commands:" lists from `polyvisor --help` down, so a new subcommand gets a
//! snapshot without editing this file, and of its usage errors (an unknown flag on every
//! subcommand; a missing required argument where one is required).
//!
//! A changed or new snapshot fails the test (`INSTA_UPDATE=no`, the default on CI).
//! Regenerate after an intended change: `INSTA_UPDATE=always cargo test -p polyvisor --test help`
//! (or `cargo insta test -p polyvisor --test help --accept`), then review the `.snap` diff.
//! See crates/cli/README.md.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// Runs `polyvisor <args>` in a clean environment (no `POLYVISOR_*` variable may change
/// the `[env: …]` annotations or defaults; no terminal, so no colour or wrapping) and
/// renders exit code, stdout and stderr as one text.
fn render(args: &[&str]) -> (Option<i32>, String) {
    let scratch = std::env::temp_dir().join(format!("pv-help-{}", std::process::id()));
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("POLYVISOR_SIM_DB", scratch.join("never-created.db"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run polyvisor");
    assert!(!scratch.exists(), "polyvisor {args:?} must not have touched the sim database");
    let code = out.status.code();
    let text = format!(
        "$ polyvisor {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        code.map_or("signal".to_string(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text)
}

/// Subcommand names listed under "Commands:" in a help text (`help` excluded).
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_list = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_list = true;
        } else if in_list && line.starts_with("  ") {
            if let Some(name) = line.split_whitespace().next().filter(|n| *n != "help") {
                names.push(name.to_string());
            }
        } else if in_list {
            in_list = false;
        }
    }
    names
}

/// Every command path, depth first: `[]`, `["ras"]`, …, `["sim", "fault", "set"]`.
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, text) = render(&args);
        assert_eq!(code, Some(0), "{text}");
        for sub in subcommands(&text).into_iter().rev() {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        paths.push(path);
    }
    paths
}

fn snapshot_name(kind: &str, path: &[String]) -> String {
    let mut name = kind.to_string();
    name.push_str("-polyvisor");
    for p in path {
        name.push('-');
        name.push_str(p);
    }
    name
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("snapshots")
}

#[test]
fn every_subcommand_is_found() {
    let paths: Vec<String> = command_paths().iter().map(|p| p.join(" ")).collect();
    for expected in [
        "",
        "ras",
        "cloudstack",
        "cloudstack install",
        "check",
        "check ras",
        "check cloudstack",
        "sim",
        "sim status",
        "sim list",
        "sim reset",
        "sim seed",
        "sim fault",
        "sim fault set",
        "sim fault clear",
        "sim fault list",
        "sim set-timing",
        "drivers",
    ] {
        assert!(paths.iter().any(|p| p == expected), "`polyvisor {expected}` not found in {paths:?}");
    }
}

#[test]
fn help_of_every_subcommand() {
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (_, text) = render(&args);
        insta::assert_snapshot!(snapshot_name("help", &path), text);
    }
}

#[test]
fn unknown_flag_on_every_subcommand() {
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--no-such-flag");
        let (code, text) = render(&args);
        assert_ne!(code, Some(0), "{text}");
        insta::assert_snapshot!(snapshot_name("unknown-flag", &path), text);
    }
}

#[test]
fn missing_required_arguments() {
    for path in [
        &[][..],
        &["check"],
        &["check", "ras"],
        &["check", "cloudstack"],
        &["cloudstack"],
        &["cloudstack", "install"],
        &["sim"],
        &["sim", "seed"],
        &["sim", "fault"],
        &["sim", "fault", "set"],
    ] {
        let (code, text) = render(path);
        assert_ne!(code, Some(0), "{text}");
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        insta::assert_snapshot!(snapshot_name("missing-arg", &path), text);
    }
}

/// Every stored snapshot belongs to a command that still exists (a removed subcommand
/// leaves no stale file behind that nobody checks).
#[test]
fn no_orphan_snapshots() {
    let paths = command_paths();
    let Ok(entries) = std::fs::read_dir(snapshot_dir()) else {
        return; // nothing stored yet: the snapshot tests fail on their own
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_prefix("help__").and_then(|f| f.strip_suffix(".snap")) else {
            continue;
        };
        let known = paths.iter().any(|p| {
            [snapshot_name("help", p), snapshot_name("unknown-flag", p), snapshot_name("missing-arg", p)]
                .contains(&name.to_string())
        });
        assert!(known, "{file} is not the snapshot of any current subcommand; delete it");
    }
}
