//! `cloudshell exec` on the simulator: the L3 and L2 flows with the spec's request
//! fixtures, exact response shapes, and bad input answered without a crash.

use async_trait::async_trait;
use polyvisor_cloudshell::exec_text;
use polyvisor_core::{Capabilities, Driver, DriverFactory, OpenOptions, Result, Settings};
use serde_json::{json, Value};
use std::sync::Arc;

struct SimOnly;

#[async_trait]
impl DriverFactory for SimOnly {
    async fn open(&self, settings: &Settings, _: &OpenOptions) -> Result<Arc<dyn Driver>> {
        assert_eq!(settings.str("driver").as_deref(), Some("sim"));
        polyvisor_sim::open(settings)
    }
    async fn capabilities(&self, settings: &Settings, _: &OpenOptions) -> Result<Capabilities> {
        polyvisor_sim::capabilities(settings)
    }
    fn driver_names(&self) -> Vec<&'static str> {
        vec!["sim"]
    }
}

struct Env {
    _dir: tempfile::TempDir,
    settings: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sim.db").to_string_lossy().into_owned();
        let settings = json!({"sim_db": db, "sim_task_ms": "0", "sim_boot_ms": "0"}).to_string();
        Env { _dir: dir, settings }
    }

    fn context(&self, remote_uid: Option<&str>) -> Value {
        let mut c = json!({
            "connectivity": {"server_address": "127.0.0.1", "cloudshell_api_port": "8029", "admin_auth_token": "t"},
            "resource": {"name": "pv", "model": "Polyvisor Cloud Provider", "attributes": {
                "Polyvisor Cloud Provider.Driver": "sim",
                "Polyvisor Cloud Provider.Driver Settings": self.settings,
                "Polyvisor Cloud Provider.Driver Secrets": "",
                "Polyvisor Cloud Provider.Networking type": "L3"}},
            "reservation": {"reservation_id": "8574cce6-0001", "domain": "Global"},
            "remote_endpoints": []
        });
        if let Some(uid) = remote_uid {
            c["remote_endpoints"] = json!([{"fullname": "web server__abc123", "app_context": {
                "app_request_json": "",
                "deployed_app_json": {"name": "web server__abc123", "vmdetails": {"uid": uid, "vmCustomParams": []}}}}]);
        }
        c
    }

    fn exec(&self, command: &str, ctx: Value, request: Value) -> Result<Value> {
        let input = json!({"protocol": 1, "command": command, "context": ctx, "request": request});
        exec_text(command, &input.to_string(), Arc::new(SimOnly)).map(|s| serde_json::from_str(&s).unwrap())
    }

    fn result(&self, command: &str, ctx: Value, request: Value) -> Value {
        let out = self.exec(command, ctx, request).unwrap();
        serde_json::from_str(out["result"].as_str().unwrap()).unwrap()
    }
}

fn fixture(name: &str, subs: &[(&str, &str)]) -> String {
    let mut s = std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for (k, v) in subs {
        s = s.replace(k, v);
    }
    s
}

fn results(v: &Value) -> &Vec<Value> {
    v["driverResponse"]["actionResults"].as_array().unwrap()
}

#[test]
fn l3_sandbox_flow_on_sim() {
    let env = Env::new();
    let prep = env.result("PrepareSandboxInfra", env.context(None), json!(fixture("prepare-infra.json", &[])));
    let r = results(&prep);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["type"], "PrepareNetwork");
    assert_eq!(r[0]["actionId"], "36af5bbf-c9b4-4e5d-b84b-9ea513c7defd");
    assert_eq!(r[1]["type"], "PrepareSubnet");
    assert_eq!(r[1]["success"], true);
    assert_eq!(r[2]["type"], "CreateKeys");
    for x in r {
        for k in ["type", "actionId", "success", "infoMessage", "errorMessage"] {
            assert!(x.get(k).is_some(), "{k} missing in {x}");
        }
    }
    let subnet = r[1]["subnetId"].as_str().unwrap().to_string();
    // Get-or-create: a re-run of Setup returns the same subnet.
    let again = env.result("PrepareSandboxInfra", env.context(None), json!(fixture("prepare-infra.json", &[])));
    assert_eq!(results(&again)[1]["subnetId"], subnet.as_str());

    let deploy =
        env.result("Deploy", env.context(None), json!(fixture("polyvisor-deploy-l3.json", &[("@SUBNET@", &subnet)])));
    let r = results(&deploy);
    assert_eq!(r[0]["type"], "DeployApp", "{deploy}");
    assert_eq!(r[0]["success"], true, "{deploy}");
    assert_eq!(r[0]["actionId"], "ad3561c1-45a5-445a-9b5f-4021879a0b0c");
    assert!(r[0]["vmName"].as_str().unwrap().starts_with("web server__"));
    let uid = r[0]["vmUuid"].as_str().unwrap().to_string();
    assert!(uid.starts_with("sim:"), "{uid}");
    assert_eq!(r[0]["deployedAppAdditionalData"]["polyvisor.driver"], "sim");
    assert!(r[0]["vmDetailsData"]["vmNetworkData"].as_array().unwrap().len() >= 2);
    assert_eq!(r[1]["type"], "ConnectToSubnet");
    assert_eq!(r[1]["success"], true, "{deploy}");
    assert!(r[1]["interface"].as_str().unwrap().contains(':'));
    // A retried Deploy of the same app finds the same VM (by its key), never a second one.
    let retry =
        env.result("Deploy", env.context(None), json!(fixture("polyvisor-deploy-l3.json", &[("@SUBNET@", &subnet)])));
    assert_eq!(results(&retry)[0]["vmUuid"], uid.as_str());

    let ctx = env.context(Some(&uid));
    assert_eq!(env.exec("PowerOn", ctx.clone(), Value::Null).unwrap()["result"], Value::Null);
    let ip = env.exec("remote_refresh_ip", ctx.clone(), Value::Null).unwrap();
    let eff = &ip["effects"][0];
    assert_eq!(eff["op"], "UpdateResourceAddress");
    assert_eq!(eff["resource"], "web server__abc123");
    assert!(eff["address"].as_str().unwrap().parse::<std::net::Ipv4Addr>().is_ok());

    let details =
        env.result("GetVmDetails", env.context(None), json!(fixture("get-vm-details.json", &[("@VM_UUID@", &uid)])));
    let d = &details.as_array().unwrap()[0];
    assert_eq!(d["appName"], "win-static");
    assert_eq!(d["errorMessage"], "");
    assert_eq!(d["vmNetworkData"][0]["isPrimary"], true);
    assert!(!d["vmNetworkData"][0]["privateIpAddress"].as_str().unwrap().is_empty());

    let sg = env.result(
        "SetAppSecurityGroups",
        env.context(None),
        json!(fixture("set-app-security-groups.json", &[("@VM_UUID@", &uid), ("@SUBNET@", &subnet)])),
    );
    assert_eq!(sg, json!([{"appName": "VirtualRouter_1", "success": true, "error": ""}]));

    env.exec("PowerOff", ctx.clone(), Value::Null).unwrap();
    env.exec("DeleteInstance", ctx.clone(), Value::Null).unwrap();
    // Deleting a missing VM succeeds; powering it on does not.
    env.exec("DeleteInstance", ctx.clone(), Value::Null).unwrap();
    assert!(env.exec("PowerOn", ctx, Value::Null).is_err());
    let gone =
        env.result("GetVmDetails", env.context(None), json!(fixture("get-vm-details.json", &[("@VM_UUID@", &uid)])));
    assert!(!gone[0]["errorMessage"].as_str().unwrap().is_empty());

    let clean = env.result("CleanupSandboxInfra", env.context(None), json!(fixture("cleanup-infra.json", &[])));
    assert_eq!(results(&clean)[0]["type"], "CleanupNetwork");
    assert_eq!(results(&clean)[0]["success"], true);
    let clean = env.result("CleanupSandboxInfra", env.context(None), json!(fixture("cleanup-infra.json", &[])));
    assert_eq!(results(&clean)[0]["success"], true);
}

#[test]
fn l2_vlan_flow_on_sim() {
    let env = Env::new();
    let req = fixture("polyvisor-deploy-l3.json", &[]);
    // Without connectSubnet actions this is the L2 Deploy.
    let mut v: Value = serde_json::from_str(&req).unwrap();
    v["driverRequest"]["actions"].as_array_mut().unwrap().remove(0);
    let deploy = env.result("Deploy", env.context(None), json!(v.to_string()));
    let uid = results(&deploy)[0]["vmUuid"].as_str().unwrap().to_string();
    let set = env.result(
        "ApplyConnectivityChanges",
        env.context(None),
        json!(fixture("set-vlan.json", &[("@VM_UUID@", &uid)])),
    );
    let r = &results(&set)[0];
    assert_eq!(r["type"], "setVlan");
    assert_eq!(r["success"], true, "{set}");
    assert_eq!(r["infoMessage"], "Setting VLAN 4 successfully completed");
    let mac = r["updatedInterface"].as_str().unwrap().to_string();
    let rm = env.result(
        "ApplyConnectivityChanges",
        env.context(None),
        json!(fixture("remove-vlan.json", &[("@VM_UUID@", &uid), ("@MAC@", &mac)])),
    );
    assert_eq!(results(&rm)[0]["type"], "removeVlan");
    assert_eq!(results(&rm)[0]["success"], true, "{rm}");
    // A VM_UUID polyvisor did not make fails that action only.
    let bad = env.result(
        "ApplyConnectivityChanges",
        env.context(None),
        json!(fixture("set-vlan.json", &[("@VM_UUID@", "20f6bf85-c72d")])),
    );
    assert_eq!(results(&bad)[0]["success"], false);
    assert!(!results(&bad)[0]["errorMessage"].as_str().unwrap().is_empty());
    env.exec("DeleteInstance", env.context(Some(&uid)), Value::Null).unwrap();
}

#[test]
fn bad_input_fails_cleanly() {
    let env = Env::new();
    // Quali's own vCenter fixture: a deployment path that is not ours.
    let r = env.result("Deploy", env.context(None), json!(fixture("deploy-vcenter.json", &[])));
    let r = &results(&r)[0];
    assert_eq!(r["success"], false);
    assert_eq!(r["actionId"], "ad3561c1-45a5-445a-9b5f-4021879a0b0c");
    assert!(r["errorMessage"].as_str().unwrap().contains("unknown deployment path"));
    // A missing template.
    let req = fixture("polyvisor-deploy-l3.json", &[("tpl-debian12", "no-such-template")]);
    let r = env.result("Deploy", env.context(None), json!(req));
    assert_eq!(results(&r)[0]["success"], false);
    assert!(results(&r)[0]["errorMessage"].as_str().unwrap().contains("template"));
    // The subnet connect of a failed deploy fails too, with its own result.
    assert_eq!(results(&r)[1]["success"], false);
    // Malformed request JSON and an unknown command are errors, not crashes.
    let e = env.exec("Deploy", env.context(None), json!("{not json")).unwrap_err();
    assert!(e.message().contains("malformed request JSON"));
    assert!(env.exec("Frobnicate", env.context(None), Value::Null).is_err());
    let e = exec_text("Deploy", "garbage", Arc::new(SimOnly)).unwrap_err();
    assert!(e.message().contains("stdin is not JSON"));
    // Bad Driver Settings name the attribute.
    let mut ctx = env.context(None);
    ctx["resource"]["attributes"]["Polyvisor Cloud Provider.Driver Settings"] = json!("[1]");
    let e = env.exec("get_inventory", ctx, Value::Null).unwrap_err();
    assert!(e.message().contains("Driver Settings"));
    // get_inventory probes and reports into the reservation output.
    let inv = env.exec("get_inventory", env.context(None), Value::Null).unwrap();
    assert_eq!(inv["effects"][0]["op"], "WriteMessageToReservationOutput");
}
