//! `polyvisor cloudshell package` + `polyvisor check cloudshell` end to end: the generated L2
//! and L3 packages on the simulator, L2 on Proxmox (fakepve), L2 (a network per VLAN) and L3
//! (a libvirt network and network filter per subnet) on libvirt (real QEMU), through the Execution-Server harness (real cloudshell-shell-core
//! contexts, the CloudShell API stand-in driven through the real cloudshell-automation-api
//! client by the shell itself).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn package(dir: &Path, networking: &str) -> std::path::PathBuf {
    let out = Command::new(BIN)
        .args(["cloudshell", "package", "--out"])
        .arg(dir)
        .args(["--networking", networking, "--driver", "sim"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let zip = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(zip.ends_with("dist/Polyvisor Cloud Provider.zip"), "{zip}");
    zip.into()
}

fn check(target: &Path, db: &Path, junit: &Path) -> String {
    let settings = serde_json::json!({"sim_db": db, "sim_task_ms": "200", "sim_boot_ms": "500"}).to_string();
    let out = Command::new(BIN)
        .args(["check", "cloudshell", "--driver", "sim", "--settings", &settings, "--junit"])
        .arg(junit)
        .arg("--")
        .arg(target)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn generated_l3_and_l2_packages_pass_check_cloudshell_on_sim() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let l3 = package(&dir.path().join("l3"), "L3");
    let text = check(&l3, &db, &dir.path().join("l3.xml"));
    for case in [
        "L3/PrepareSandboxInfra",
        "L3/Deploy",
        "L3/SetAppSecurityGroups",
        "L3/CleanupSandboxInfra",
        "bad input/cancelled Deploy",
    ] {
        assert!(text.contains(&format!("PASS  {case}")), "{case} missing:\n{text}");
    }
    assert!(text.contains("0 failed"), "{text}");
    let junit = std::fs::read_to_string(dir.path().join("l3.xml")).unwrap();
    assert!(junit.contains("<testsuite"), "{junit}");
    // The L2 package, checked as a folder this time.
    package(&dir.path().join("l2"), "L2");
    let text = check(&dir.path().join("l2"), &db, &dir.path().join("l2.xml"));
    for case in
        ["L2/ApplyConnectivityChanges setVlan", "L2/ApplyConnectivityChanges removeVlan", "L2/remote_refresh_ip"]
    {
        assert!(text.contains(&format!("PASS  {case}")), "{case} missing:\n{text}");
    }
    // Nothing the harness deployed is left behind (the cancelled deploy included).
    let out = Command::new(BIN).args(["sim", "--db"]).arg(&db).args(["list", "--json"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && list.contains("tpl-debian12"), "{list}");
    assert!(!list.contains("cloudshell:") && !list.contains("\"cs-"), "left behind:\n{list}");
}

#[test]
fn package_refuses_what_the_driver_cannot_do_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN).args(["cloudshell", "package", "--out"]).arg(dir.path()).args(args).output().unwrap()
    };
    let out = run(&["--driver", "no-such-driver"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown driver"));
    let out = run(&["--name", "bad\"name"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--networking", "L7"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `b`'s settings as `--settings` JSON, without `secret_keys`, and those as `--secrets` JSON
/// (what goes through the shell's encrypted `Driver Secrets` attribute).
fn settings_and_secrets(b: &polyvisor_test_support::backend::Backend, secret_keys: &[&str]) -> (String, String) {
    let mut settings = b.settings.clone();
    let mut secrets = serde_json::Map::new();
    for k in secret_keys {
        if let Some(v) = settings.remove(*k) {
            secrets.insert(k.to_string(), v);
        }
    }
    (serde_json::Value::Object(settings).to_string(), serde_json::Value::Object(secrets).to_string())
}

/// `polyvisor cloudshell package --networking <networking> --driver <driver> [--settings
/// <settings>] --out <dir>`, which must succeed.
fn generate(dir: &Path, networking: &str, driver: &str, settings: Option<&str>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["cloudshell", "package", "--networking", networking, "--driver", driver]);
    if let Some(s) = settings {
        cmd.args(["--settings", s]);
    }
    let out = cmd.arg("--out").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `polyvisor check cloudshell <args> -- <package>`: its report, once it exited 0 with a PASS
/// line for each of `cases`.
fn check_passes(args: &[&str], package: &Path, cases: &[&str]) -> String {
    let out = Command::new(BIN).args(["check", "cloudshell"]).args(args).arg("--").arg(package).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for case in cases {
        assert!(text.contains(&format!("PASS  {case}")), "{case} missing:\n{text}");
    }
    text
}

/// The generated L2 package on Proxmox (the shared fakepve backend): secrets go through
/// `Driver Secrets` (encrypted, decrypted by the shell via the API stand-in). fakepve's
/// fresh clones report no guest-agent address, so `remote_refresh_ip` is skipped the way
/// CloudShell skips it for apps with `Wait for IP` false.
#[test]
fn generated_l2_package_passes_check_cloudshell_on_proxmox() {
    let b = polyvisor_test_support::backend::Backend::load("proxmox").unwrap_or_else(|e| panic!("{e}"));
    let (settings, secrets) = settings_and_secrets(&b, &["token_secret", "password"]);
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "L2", "proxmox", None);
    let text = check_passes(
        &[
            "--driver",
            "proxmox",
            "--no-wait-for-ip",
            "--template",
            &b.template_id,
            "--settings",
            &settings,
            "--secrets",
            &secrets,
        ],
        dir.path(),
        &[
            "L2/Deploy",
            "L2/ApplyConnectivityChanges setVlan",
            "L2/ApplyConnectivityChanges removeVlan",
            "L2/DeleteInstance",
        ],
    );
    for s in b.secrets() {
        assert!(!text.contains(&s), "a secret reached the report");
    }
}

/// The generated L2 package on libvirt (real QEMU, the shared libvirt backend) on a
/// bridge-per-VLAN host: `vlan_networks=pv-vlan-{vlan}` puts the VLAN 42 NIC on the libvirt
/// network `pv-vlan-42` (defined by scripts/ci/start-libvirt.sh), hot-plugged into the
/// stopped app and unplugged from the running one; Deploy clones the contract's template,
/// PowerOn boots it and `remote_refresh_ip` waits for its DHCP address on `tg-net`.
#[cfg(feature = "libvirt")]
#[test]
fn generated_l2_package_passes_check_cloudshell_on_libvirt() {
    let b = polyvisor_test_support::backend::Backend::load("libvirt").unwrap_or_else(|e| panic!("{e}"));
    let mut settings = b.settings.clone();
    settings.insert("vlan_networks".into(), "pv-vlan-{vlan}".into());
    let settings = serde_json::Value::Object(settings).to_string();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "L2", "libvirt", Some(&settings));
    check_passes(
        &["--driver", "libvirt", "--template", &b.template_id, "--settings", &settings],
        dir.path(),
        &[
            "L2/Deploy",
            "L2/ApplyConnectivityChanges setVlan",
            "L2/PowerOn",
            "L2/remote_refresh_ip (UpdateResourceAddress)",
            "L2/GetVmDetails",
            "L2/ApplyConnectivityChanges removeVlan",
            "L2/DeleteInstance",
        ],
    );
}

/// polyvisor subnets (networks `pv-sn-*` marked with `cidr`) on the shared libvirt host.
#[cfg(feature = "libvirt")]
fn libvirt_subnets_with_cidr(cidr: &str) -> Vec<String> {
    use polyvisor_test_support::tiny::virsh;
    let names = virsh(&["net-list", "--all", "--name"]).unwrap_or_default();
    names
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("pv-sn-"))
        .filter(|n| virsh(&["net-dumpxml", n]).is_ok_and(|x| x.contains(&format!("cidr=\"{cidr}\""))))
        .map(str::to_string)
        .collect()
}

/// The generated L3 package on libvirt (real QEMU, the shared libvirt backend):
/// PrepareSandboxInfra makes the sandbox's subnet a libvirt network (10.0.1.0/24, host
/// gateway, DHCP), Deploy clones the contract's template and connects it to the subnet,
/// SetAppSecurityGroups writes the subnet's network filter, and CleanupSandboxInfra (after
/// DeleteInstance) removes network and filter: none is left on the host afterwards.
#[cfg(feature = "libvirt")]
#[test]
fn generated_l3_package_passes_check_cloudshell_on_libvirt() {
    use polyvisor_test_support::tiny::virsh;
    let b = polyvisor_test_support::backend::Backend::load("libvirt").unwrap_or_else(|e| panic!("{e}"));
    // The subnet of an interrupted earlier run would hold 10.0.1.0/24 on this host.
    for n in libvirt_subnets_with_cidr("10.0.1.0/24") {
        let _ = virsh(&["net-destroy", &n]);
        let _ = virsh(&["net-undefine", &n]);
        let _ = virsh(&["nwfilter-undefine", &n.replace("pv-sn-", "pv-sg-")]);
    }
    let settings = b.settings_json();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "L3", "libvirt", Some(&settings));
    check_passes(
        &["--driver", "libvirt", "--template", &b.template_id, "--settings", &settings],
        dir.path(),
        &[
            "L3/PrepareSandboxInfra",
            "L3/Deploy",
            "L3/PowerOn",
            "L3/remote_refresh_ip (UpdateResourceAddress)",
            "L3/GetVmDetails",
            "L3/SetAppSecurityGroups",
            "L3/DeleteInstance (twice)",
            "L3/CleanupSandboxInfra",
        ],
    );
    assert_eq!(libvirt_subnets_with_cidr("10.0.1.0/24"), Vec::<String>::new(), "a subnet was left behind");
}

/// The generated L3 package on OpenStack (the shared loopback cloud: real Keystone, Nova with
/// the fake virt driver, Neutron ML2). The app template is a template server (metadata
/// `polyvisor_template=1`, what `list_guests` reports as a template) the test boots with the
/// official client: Deploy boots a fresh image of it; the sandbox subnet becomes a project
/// network with an IPv4 subnet and a security group; connectSubnet attaches a port through
/// Nova; SetAppSecurityGroups rewrites the group's ingress rules; CleanupSandboxInfra removes
/// ports, group and network. Nothing the flow made is left (servers, networks, images).
#[test]
fn generated_l3_package_passes_check_cloudshell_on_openstack() {
    let b = polyvisor_test_support::backend::Backend::load("openstack").unwrap_or_else(|e| panic!("{e}"));
    let name = format!("pvt-cs-tmpl-{}", std::process::id());
    let tmpl = b.openstack_json(&[
        "server",
        "create",
        "--image",
        &b.template_id,
        "--flavor",
        "m1.nano",
        "--network",
        "pv-net",
        "--property",
        "polyvisor_template=1",
        "--wait",
        &name,
    ]);
    let tmpl_id = tmpl["id"].as_str().expect("server id").to_string();
    let names = |what: &[&str]| -> Vec<String> {
        let v = b.openstack_json(what);
        let mut n: Vec<String> =
            v.as_array().into_iter().flatten().filter_map(|x| x["Name"].as_str().map(str::to_string)).collect();
        n.sort();
        n
    };
    let (servers, networks, images) =
        (names(&["server", "list"]), names(&["network", "list"]), names(&["image", "list"]));
    let (settings, secrets) = settings_and_secrets(&b, &["password", "application_credential_secret"]);
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "L3", "openstack", None);
    let run = std::panic::catch_unwind(|| {
        check_passes(
            &["--driver", "openstack", "--template", &tmpl_id, "--settings", &settings, "--secrets", &secrets],
            dir.path(),
            &[
                "L3/PrepareSandboxInfra",
                "L3/Deploy",
                "L3/PowerOn",
                "L3/remote_refresh_ip (UpdateResourceAddress)",
                "L3/GetVmDetails",
                "L3/SetAppSecurityGroups",
                "L3/DeleteInstance (twice)",
                "L3/CleanupSandboxInfra",
            ],
        )
    });
    let after = (names(&["server", "list"]), names(&["network", "list"]), names(&["image", "list"]));
    let deleted = b.openstack_cli(&["server", "delete", "--wait", &tmpl_id]);
    assert!(deleted.status.success(), "server delete: {}", String::from_utf8_lossy(&deleted.stderr));
    let text = run.unwrap_or_else(|p| std::panic::resume_unwind(p));
    for s in b.secrets() {
        assert!(!text.contains(&s), "a secret reached the report");
    }
    assert_eq!(after, (servers, networks, images), "left behind (servers, networks, images)");
}

/// L3 needs subnets, which the Proxmox driver does not implement: the generator refuses.
#[test]
fn l3_package_is_refused_for_proxmox() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["cloudshell", "package", "--networking", "L3", "--driver", "proxmox", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("L3 networking"));
}

/// libvirt does L2 only with `vlans` on (networks that can tag) or `vlan_networks` (a network
/// per VLAN): the generator checks the `--settings` it is given and writes them as the
/// `Driver Settings` default.
#[test]
fn l2_package_for_libvirt_needs_vlans_in_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["cloudshell", "package", "--networking", "L2", "--driver", "libvirt", "--out"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("L2 networking"));
    let out = run(&["--settings", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--settings must be a JSON object"));
    let out = run(&["--settings", r#"{"vlans": "true", "network": "o'vs"}"#]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let def = std::fs::read_to_string(dir.path().join("shell-definition.yaml")).unwrap();
    assert!(def.contains(r#"default: '{"network":"o''vs","vlans":"true"}'"#), "{def}");
    // A network per VLAN (bridge-per-VLAN hosts) does L2 as well.
    let out = run(&["--settings", r#"{"vlan_networks": "br-vlan{vlan}"}"#]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["--settings", r#"{"vlan_networks": "br-vlan"}"#]);
    assert_eq!(out.status.code(), Some(2), "a template without {{vlan}} is refused");
}
