//! `polyvisor drivers`: one line per driver-table row, name first, with aliases and
//! credential-free capabilities, or how to get a driver this build lacks.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

#[test]
fn drivers_lists_every_table_row() {
    let out =
        Command::new(BIN).arg("drivers").env("POLYVISOR_SIM_DB", "/nonexistent/never-created.db").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.starts_with(&["sim", "proxmox", "libvirt"]), "{text}");
    assert!(names.contains(&"kubevirt"), "{text}");
    let line = |n: &str| text.lines().find(|l| l.starts_with(n)).unwrap().to_string();
    assert!(line("proxmox").contains("aliases=pve,proxmox-ve") && line("proxmox").contains("create consoles=vnc"));
    assert!(line("sim").contains("templates=flag"), "{text}");
    assert!(!std::path::Path::new("/nonexistent/never-created.db").exists());
    let libvirt = line("libvirt");
    if cfg!(feature = "libvirt") {
        assert!(libvirt.contains("templates=flag") && libvirt.contains("aliases=kvm,qemu"), "{libvirt}");
    } else {
        assert!(libvirt.contains("rebuild polyvisor with `--features libvirt`"), "{libvirt}");
    }
}
