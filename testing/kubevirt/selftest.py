"""The KubeVirt stand-in earns trust: the official Kubernetes Python client (PyPI `kubernetes`)
drives a private instance of it, and every object it answers with is validated against
KubeVirt's OpenAPI schema (strict: unknown fields fail). Also proves the stand-in refuses
what a real API server refuses (schema-invalid objects 422, no token 401, foreign namespace
403, stale resourceVersion 409, duplicate 409 AlreadyExists).

Run: python3 testing/kubevirt/selftest.py   (exit 0 = every check passed). `cargo test -p
polyvisor-kubevirt --test standin` runs it.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import kubernetes.client
from kubernetes.client.rest import ApiException

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from kubevirt_emulator import Schema  # noqa: E402

NS = "polyvisor"
KV = ("kubevirt.io", "v1")
SNAP = ("snapshot.kubevirt.io", "v1beta1")
CLONE = ("clone.kubevirt.io", "v1beta1")
DEADLINE = 30.0  # seconds for any controller progress (busy 2-core machines)

schema = Schema()
checks = 0


def valid(definition: str, obj: dict) -> dict:
    global checks
    errors = schema.errors(definition, obj)
    assert not errors, f"{definition} from the stand-in violates the schema: {errors}"
    checks += 1
    return obj


def expect_status(code: int, fn, *args, **kwargs) -> ApiException:
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"expected {code}, got {e.status}: {e.body}"
        status = json.loads(e.body)
        assert status["kind"] == "Status" and status["code"] == code, status
        return e
    raise AssertionError(f"expected HTTP {code}, the call succeeded")


def wait_for(what: str, fn):
    t0 = time.monotonic()
    while time.monotonic() - t0 < DEADLINE:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def vm_body(name: str, **extra) -> dict:
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "annotations": {"kubevirt.io/latest-observed-api-version": "v1"}},
            "spec": {"runStrategy": "Halted", "template": {"spec": {
                "domain": {"cpu": {"cores": 1}, "memory": {"guest": "512Mi"},
                           "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                "networks": [{"name": "default", "pod": {}}], "terminationGracePeriodSeconds": 5}}}}
    body["spec"].update(extra)
    return body


def main() -> int:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pv-kv-selftest-"))
    violations = tmp / "violations.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "kubevirt_emulator.py"), "--host", "127.0.9.3", "--port", "0",
         "--certdir", str(tmp / "pki"), "--token", "selftest-token", "--namespace", NS,
         "--seed", str(HERE / "seed.json"), "--violations", str(violations)],
        stdout=subprocess.PIPE, stderr=open(tmp / "emulator.log", "w"), text=True)
    try:
        line = proc.stdout.readline()
        assert line, "the stand-in did not start: " + (tmp / "emulator.log").read_text()[-2000:]
        ready = json.loads(line)
        run(ready, violations)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"stand-in self-test: {checks} schema checks, all passed")
    return 0


def run(ready: dict, violations: pathlib.Path) -> None:
    conf = kubernetes.client.Configuration()
    conf.host = ready["listening"]
    conf.ssl_ca_cert = ready["ca_file"]
    conf.api_key = {"authorization": "selftest-token"}
    conf.api_key_prefix = {"authorization": "Bearer"}
    api_client = kubernetes.client.ApiClient(conf)
    co = kubernetes.client.CustomObjectsApi(api_client)

    def sub(kind: str, name: str, action: str, body: dict | None = None):
        params = api_client.param_serialize(
            method="PUT", resource_path=f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/{kind}/{name}/{action}",
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body or {}, auth_settings=["BearerToken"])
        resp = api_client.call_api(*params, _request_timeout=10)
        resp.read()
        if resp.status >= 400:
            raise ApiException(status=resp.status, reason=resp.reason, body=resp.data.decode())
        return resp

    def get(gv, plural, name):
        return co.get_namespaced_custom_object(*gv, NS, plural, name, _request_timeout=10)

    def peek(gv, plural, name) -> dict:
        """The object, or {} while it does not exist (yet)."""
        try:
            return get(gv, plural, name)
        except ApiException as e:
            if e.status == 404:
                return {}
            raise

    # Discovery and listing; every seeded object validates.
    items = co.list_namespaced_custom_object(*KV, NS, "virtualmachines", _request_timeout=10)["items"]
    assert {i["metadata"]["name"] for i in items} >= {"base-vm", "tpl-fedora", "web-01"}, items
    for i in items:
        valid("v1.VirtualMachine", i)
        for k in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            assert k in i["metadata"], (k, i["metadata"])

    # Authentication and namespace RBAC, as an API server answers them.
    anon = kubernetes.client.Configuration()
    anon.host, anon.ssl_ca_cert = conf.host, conf.ssl_ca_cert
    expect_status(401, kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(anon))
                  .list_namespaced_custom_object, *KV, NS, "virtualmachines", _request_timeout=10)
    expect_status(403, co.list_namespaced_custom_object, *KV, "other-team", "virtualmachines", _request_timeout=10)
    expect_status(404, get, KV, "virtualmachines", "no-such-vm")

    # Create: server fields filled; duplicates and schema violations refused.
    vm = valid("v1.VirtualMachine", co.create_namespaced_custom_object(*KV, NS, "virtualmachines",
                                                                          vm_body("st-a"), _request_timeout=10))
    assert vm["metadata"]["generation"] == 1 and vm["metadata"]["uid"], vm["metadata"]
    expect_status(409, co.create_namespaced_custom_object, *KV, NS, "virtualmachines", vm_body("st-a"))
    bad = vm_body("st-bad")
    bad["spec"]["template"]["spec"]["domain"]["cpuz"] = {"cores": 2}
    before = violations.read_text().count("\n")
    e = expect_status(422, co.create_namespaced_custom_object, *KV, NS, "virtualmachines", bad)
    assert "cpuz" in json.loads(e.body)["message"]
    assert violations.read_text().count("\n") == before + 1, "a rejected object is recorded as a violation"
    expect_status(422, co.create_namespaced_custom_object, *KV, NS, "virtualmachines",
                  vm_body("st-bad2", runStrategy=7))

    # Merge patch: resourceVersion and generation move; stale resourceVersion conflicts.
    rv = vm["metadata"]["resourceVersion"]
    p = co.patch_namespaced_custom_object(*KV, NS, "virtualmachines", "st-a",
                                          {"metadata": {"labels": {"x": "1"}}}, _request_timeout=10)
    assert p["metadata"]["resourceVersion"] != rv and p["metadata"]["generation"] == 1, p["metadata"]
    p = co.patch_namespaced_custom_object(*KV, NS, "virtualmachines", "st-a",
                                          {"spec": {"runStrategy": "Halted"}}, _request_timeout=10)
    assert p["metadata"]["generation"] == 2, p["metadata"]
    expect_status(409, co.patch_namespaced_custom_object, *KV, NS, "virtualmachines", "st-a",
                  {"metadata": {"resourceVersion": rv, "labels": {"y": "2"}}})
    p = co.patch_namespaced_custom_object(*KV, NS, "virtualmachines", "st-a",
                                          {"metadata": {"labels": {"x": None}}}, _request_timeout=10)
    assert "x" not in (p["metadata"].get("labels") or {}), "null removes a key (RFC 7386)"

    # Power through the subresources: VMI appears, runs, gets an IP and a MAC; pause; stop.
    sub("virtualmachines", "st-a", "start")
    vmi = wait_for("VMI running", lambda: (lambda v: v if (v.get("status") or {}).get("phase") == "Running" else None)(
        peek(KV, "virtualmachineinstances", "st-a")))
    valid("v1.VirtualMachineInstance", vmi)
    iface = vmi["status"]["interfaces"][0]
    assert iface["ipAddress"] and iface["mac"], iface
    assert vmi["metadata"]["ownerReferences"][0]["uid"] == vm["metadata"]["uid"]
    wait_for("printableStatus Running",
             lambda: get(KV, "virtualmachines", "st-a").get("status", {}).get("printableStatus") == "Running")
    valid("v1.VirtualMachine", get(KV, "virtualmachines", "st-a"))
    expect_status(409, sub, "virtualmachines", "st-a", "start")
    sub("virtualmachineinstances", "st-a", "pause")
    wait_for("Paused", lambda: get(KV, "virtualmachines", "st-a")["status"]["printableStatus"] == "Paused")
    expect_status(409, sub, "virtualmachineinstances", "st-a", "pause")
    sub("virtualmachineinstances", "st-a", "unpause")
    old_uid = vmi["metadata"]["uid"]
    sub("virtualmachines", "st-a", "restart", {"gracePeriodSeconds": 0})
    wait_for("a new VMI after restart", lambda: (lambda v: v.get("metadata", {}).get("uid") not in (None, old_uid) and
                                                 v.get("status", {}).get("phase") == "Running")(
        peek(KV, "virtualmachineinstances", "st-a")))
    e = expect_status(422, sub, "virtualmachines", "st-a", "stop", {"gracePeriodz": 0})
    sub("virtualmachines", "st-a", "stop", {"gracePeriod": 0})

    def vmi_gone():
        try:
            get(KV, "virtualmachineinstances", "st-a")
            return False
        except ApiException as e:
            return e.status == 404
    wait_for("VMI gone", vmi_gone)
    expect_status(409, sub, "virtualmachines", "st-a", "stop")

    # Snapshot → Succeeded with content; restore → complete; clone from the snapshot with patches.
    snap = {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": "st-a-s1"},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "st-a"}}}
    valid("v1beta1.VirtualMachineSnapshot", co.create_namespaced_custom_object(*SNAP, NS, "virtualmachinesnapshots", snap))
    s = wait_for("snapshot ready", lambda: (lambda v: v if v.get("status", {}).get("readyToUse") else None)(
        get(SNAP, "virtualmachinesnapshots", "st-a-s1")))
    valid("v1beta1.VirtualMachineSnapshot", s)
    valid("v1beta1.VirtualMachineSnapshotContent",
          get(SNAP, "virtualmachinesnapshotcontents", s["status"]["virtualMachineSnapshotContentName"]))
    co.patch_namespaced_custom_object(*KV, NS, "virtualmachines", "st-a",
                                      {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 4}}}}}})
    restore = {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
               "metadata": {"name": "st-a-r1"},
               "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "st-a"},
                        "virtualMachineSnapshotName": "st-a-s1", "targetReadinessPolicy": "StopTarget"}}
    co.create_namespaced_custom_object(*SNAP, NS, "virtualmachinerestores", restore)
    r = wait_for("restore complete", lambda: (lambda v: v if v.get("status", {}).get("complete") else None)(
        get(SNAP, "virtualmachinerestores", "st-a-r1")))
    valid("v1beta1.VirtualMachineRestore", r)
    assert get(KV, "virtualmachines", "st-a")["spec"]["template"]["spec"]["domain"]["cpu"]["cores"] == 1
    clone = {"apiVersion": "clone.kubevirt.io/v1beta1", "kind": "VirtualMachineClone",
             "metadata": {"name": "st-c1"},
             "spec": {"source": {"apiGroup": "snapshot.kubevirt.io", "kind": "VirtualMachineSnapshot", "name": "st-a-s1"},
                      "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "st-b"},
                      "labelFilters": ["*", "!polyvisor.io/*"],
                      "patches": [json.dumps({"op": "add", "path": "/spec/template/spec/domain/cpu",
                                              "value": {"cores": 3}})]}}
    valid("v1beta1.VirtualMachineClone", co.create_namespaced_custom_object(*CLONE, NS, "virtualmachineclones", clone))
    c = wait_for("clone Succeeded", lambda: (lambda v: v if v.get("status", {}).get("phase") in ("Succeeded", "Failed")
                                             else None)(get(CLONE, "virtualmachineclones", "st-c1")))
    assert c["status"]["phase"] == "Succeeded", c
    valid("v1beta1.VirtualMachineClone", c)
    b = valid("v1.VirtualMachine", get(KV, "virtualmachines", "st-b"))
    assert b["spec"]["template"]["spec"]["domain"]["cpu"]["cores"] == 3, b["spec"]
    # A clone whose patch makes the target invalid fails (and is recorded).
    bad_clone = json.loads(json.dumps(clone))
    bad_clone["metadata"]["name"] = "st-c2"
    bad_clone["spec"]["target"]["name"] = "st-c"
    bad_clone["spec"]["patches"] = [json.dumps({"op": "add", "path": "/spec/bogus", "value": 1})]
    co.create_namespaced_custom_object(*CLONE, NS, "virtualmachineclones", bad_clone)
    wait_for("invalid clone Failed",
             lambda: get(CLONE, "virtualmachineclones", "st-c2").get("status", {}).get("phase") == "Failed")

    # Delete: the VM goes, its snapshot content follows its snapshot.
    for plural, name, gv in [("virtualmachineclones", "st-c1", CLONE), ("virtualmachineclones", "st-c2", CLONE),
                             ("virtualmachinerestores", "st-a-r1", SNAP), ("virtualmachinesnapshots", "st-a-s1", SNAP),
                             ("virtualmachines", "st-a", KV), ("virtualmachines", "st-b", KV)]:
        co.delete_namespaced_custom_object(*gv, NS, plural, name, _request_timeout=10)
    wait_for("snapshot content deleted", lambda: not co.list_namespaced_custom_object(
        *SNAP, NS, "virtualmachinesnapshotcontents")["items"])
    names = {i["metadata"]["name"] for i in co.list_namespaced_custom_object(*KV, NS, "virtualmachines")["items"]}
    assert "st-a" not in names and "st-b" not in names, names


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
