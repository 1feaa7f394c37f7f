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
    assert_eq!(
        names,
        ["sim", "proxmox", "libvirt", "hpevme", "azure", "xcpng", "openstack", "virtuozzo", "kubevirt", "hyperv"],
        "{text}"
    );
    let line = |n: &str| text.lines().find(|l| l.starts_with(n)).unwrap().to_string();
    assert!(line("proxmox").contains("aliases=pve,proxmox-ve") && line("proxmox").contains("create consoles=vnc"));
    assert!(line("sim").contains("templates=flag"), "{text}");
    assert!(line("azure").contains("aliases=arm,azure-arm") && line("azure").contains("templates=flag"), "{text}");
    assert!(!std::path::Path::new("/nonexistent/never-created.db").exists());
    let libvirt = line("libvirt");
    if cfg!(feature = "libvirt") {
        assert!(libvirt.contains("templates=flag") && libvirt.contains("aliases=kvm,qemu"), "{libvirt}");
    } else {
        assert!(libvirt.contains("rebuild polyvisor with `--features libvirt`"), "{libvirt}");
    }
}

#[test]
fn xcpng_is_listed_with_its_aliases() {
    let out = Command::new(BIN).arg("drivers").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("xcpng")).unwrap_or_default().to_string();
    assert!(line.contains("aliases=xenserver,xcp-ng") && line.contains("templates=flag"), "{text}");
}
