"""The stand-in earns trust: HPE's own `morpheus-python-sdk` (generated from the same OpenAPI
description) drives a scenario through it (list, start, stop, snapshot, clone, delete) and
must get answers its models accept; the spec validator rejects what the description rejects
(unknown path, undeclared parameter, missing required field, wrong type); and after the
scenario not one request or response broke the description.

Run: python3 -m unittest testing/hpevme/test_standin.py (crates/hpevme/tests/standin.rs runs it
under `cargo test`). Starts its own stand-in on 127.0.0.1 (random port, TLS, short delays).
"""

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spec as spec_mod  # noqa: E402



def _lazy_sdk():
    """HPE's SDK, PyPI morpheus-python-sdk, with its package `__init__`s replaced by lazy
    ones: they eagerly import all 2,794 generated models and every API (~25 s of CPU) where the scenario
    needs a few dozen. The same modules and classes are loaded, on first use (the API client
    looks models up with `getattr(morpheus.models, name)`, which the lazy module answers)."""
    import importlib
    import importlib.util
    import re
    import types

    root = os.path.dirname(importlib.util.find_spec("morpheus").origin)

    def lazy(name, init):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.dirname(init)]
        with open(init, encoding="utf-8") as f:
            where = dict((cls, m) for m, cls in re.findall(r"^from ([\w.]+) import (\w+)", f.read(), re.M))

        def __getattr__(attr):
            if attr in where:
                value = getattr(importlib.import_module(where[attr]), attr)
            elif importlib.util.find_spec("%s.%s" % (name, attr)) is not None:
                value = importlib.import_module("%s.%s" % (name, attr))
            else:
                raise AttributeError(attr)
            setattr(mod, attr, value)
            return value

        mod.__getattr__ = __getattr__
        sys.modules[name] = mod
        return mod

    pkg = lazy("morpheus", os.path.join(root, "__init__.py"))
    pkg.models = lazy("morpheus.models", os.path.join(root, "models", "__init__.py"))
    pkg.api = lazy("morpheus.api", os.path.join(root, "api", "__init__.py"))
    return importlib.import_module("morpheus")


morpheus = _lazy_sdk()
from morpheus.api.instances_api import InstancesApi  # noqa: E402
import morpheus.exceptions  # noqa: E402


class StandIn:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hpevme-standin-")
        self.token = "t0ken-for-the-sdk"
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "standin.py"), "--host", "127.0.0.1", "--port", "0",
             "--certdir", os.path.join(self.dir, "pki"), "--token", self.token, "--delay", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("stand-in did not start: " + self.proc.stderr.read())
        self.ready = json.loads(line)
        self.url = self.ready["listening"]
        self.ctx = ssl.create_default_context(cafile=self.ready["ca_file"])

    def raw(self, method, path, body=None, token=True):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + self.token
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def violations(self):
        return self.raw("GET", "/__standin/violations")[1]["violations"]

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(fn, what, bound=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


class StandInTrust(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = StandIn()
        cfg = morpheus.Configuration(host=cls.s.url, access_token=cls.s.token, ssl_ca_cert=cls.s.ready["ca_file"])
        cls.api = InstancesApi(morpheus.ApiClient(cfg))

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def status(self, iid):
        return self.api.get_instance(iid).instance.status

    def test_1_sdk_scenario(self):
        api = self.api
        listed = api.list_instances(max=100)
        names = {i.name: i.id for i in listed.instances}
        self.assertIn("base-vm", names)
        self.assertEqual(listed.meta.total, len(listed.instances))
        src = names["base-vm"]
        self.assertEqual(self.status(src), "stopped")
        # start / stop
        self.assertTrue(api.start_instance(src).success)
        wait_for(lambda: self.status(src) == "running", "running")
        self.assertTrue(api.stop_instance(src).success)
        wait_for(lambda: self.status(src) == "stopped", "stopped")
        # the power actions are processes in the history, read through the SDK's models
        procs = api.get_instance_history(src).processes
        self.assertEqual([(p.process_type.code, p.status) for p in procs if p.process_type.code in ("start", "stop")],
                         [("start", "complete"), ("stop", "complete")])
        # a start the "cluster" fails: the instance stays stopped, the process fails with the error
        self.assertEqual(self.s.raw("POST", "/__standin/fail-process", {"code": "start", "error": "no capacity"})[0],
                         200)
        self.assertTrue(api.start_instance(src).success)
        failed = wait_for(lambda: [p for p in api.get_instance_history(src).processes
                                   if p.process_type.code == "start" and p.status == "failed"], "failed start")
        self.assertEqual(failed[0].error, "no capacity")
        self.assertEqual(self.status(src), "stopped")
        # snapshot: a process to follow, then the snapshot in the list
        from morpheus.models.snapshot_instance_request import SnapshotInstanceRequest
        req = SnapshotInstanceRequest.from_dict({"snapshot": {"name": "sdk-snap", "description": "by the SDK"}})
        snap = api.snapshot_instance(src, snapshot_instance_request=req)
        self.assertTrue(snap.success)
        self.assertEqual(len(snap.process_ids), 1)
        wait_for(lambda: any(x.name == "sdk-snap" and x.status == "complete"
                             for x in api.snapshots_instance(src).snapshots), "snapshot")
        # clone, found by name; it boots like a Morpheus clone
        from morpheus.models.clone_instance_request import CloneInstanceRequest
        self.assertTrue(api.clone_instance(src, clone_instance_request=CloneInstanceRequest.from_dict(
            {"name": "sdk-clone"})).success)
        clone = wait_for(lambda: api.list_instances(name="sdk-clone").instances, "clone")[0]
        wait_for(lambda: self.status(clone.id) == "running", "clone running")
        # delete (the VM on the cluster too), then it is gone
        self.assertTrue(api.delete_instance(clone.id, preserve_volumes="off", keep_backups="off").success)
        wait_for(lambda: not api.list_instances(name="sdk-clone").instances, "clone removed")
        with self.assertRaises(morpheus.exceptions.NotFoundException):
            api.get_instance(clone.id)
        self.assertEqual(self.s.violations(), [], "the SDK scenario broke the description")

    def test_1b_sdk_catalog_scenario(self):
        """The provisioning catalog the driver resolves `cloud`, `instance_type`, `layout` and
        `plan` through, and a create from it, driven by the SDK."""
        from morpheus.api.clouds_api import CloudsApi
        from morpheus.api.library_api import LibraryApi
        from morpheus.models.add_instance_request import AddInstanceRequest
        client = self.api.api_client
        zones = CloudsApi(client).list_clouds(name="vme-cluster").zones
        self.assertEqual([z.id for z in zones], [5])
        types = self.api.list_instance_types_provisioning(name="HPE VM").instance_types
        self.assertEqual([(t.id, t.code) for t in types], [(50, "mvm")])
        self.assertEqual(self.api.get_instance_type_provisioning(50).instance_type.code, "mvm")
        lib = LibraryApi(client)
        layouts = lib.list_layouts_for_instance_type(50, max=100).instance_type_layouts
        self.assertEqual(sorted(lay.id for lay in layouts), [60, 61])
        plans = self.api.list_instance_service_plans(zone_id=5, layout_id=60, site_id=1).plans
        self.assertEqual(sorted((p.max_cores, p.id) for p in plans), [(1, 70), (2, 71), (4, 72)])
        from morpheus.api.networks_api import NetworksApi
        nets = NetworksApi(client).list_networks(zone_id=5).networks
        self.assertEqual(sorted((n.id, n.vlan_id) for n in nets), [(90, None), (91, 100)])
        images = lib.list_virtual_images(name="debian-12-netinst.iso").virtual_images
        self.assertEqual([(i.id, i.image_type) for i in images], [(81, "iso")])
        req = AddInstanceRequest.from_dict({
            "zoneId": 5, "config": {"imageId": 80},
            "instance": {"name": "sdk-made", "site": {"id": 1}, "instanceType": {"code": "mvm"},
                         "layout": {"id": 60}, "plan": {"id": 71}},
            "networkInterfaces": [{"network": {"id": "network-91"}, "ipMode": "dhcp"}],
            "tags": [{"name": "polyvisor_key", "value": "i-9-9-VM"}]})
        made = self.api.add_instance(add_instance_request=req)
        iid = made.actual_instance.instance.id if hasattr(made, "actual_instance") else made.instance.id
        wait_for(lambda: self.status(iid) == "running", "provisioned")
        inst = self.api.get_instance(iid).instance
        self.assertEqual((inst.max_cores, inst.plan.id, inst.layout.id), (2, 71, 60))
        self.assertTrue(self.api.delete_instance(iid, preserve_volumes="off", keep_backups="off").success)
        wait_for(lambda: not self.api.list_instances(name="sdk-made").instances, "removed")
        # what a real appliance refuses: a layout of another instance type
        bad = dict(req.to_dict())
        bad["instance"]["layout"] = {"id": 62}
        st, body = self.s.raw("POST", "/api/instances", bad)
        self.assertEqual((st, body["msg"]), (400, "Layout not found for the instance type"))
        self.assertEqual(self.s.violations(), [], "the SDK catalog scenario broke the description")

    def test_2_requests_the_description_rejects_fail(self):
        s = self.s
        before = len(s.violations())
        st, body = s.raw("GET", "/api/no-such-thing")
        self.assertEqual(st, 404)
        self.assertIn("unknown path", body["msg"])
        st, body = s.raw("GET", "/api/instances?max=ten")
        self.assertEqual(st, 400)
        self.assertIn("query max", body["msg"])
        st, body = s.raw("GET", "/api/instances?colour=blue")
        self.assertEqual(st, 400)
        st, body = s.raw("PUT", "/api/instances/abc/start")
        self.assertEqual(st, 400)
        st, body = s.raw("PUT", "/api/instances/1001/snapshot", {"snapshot": {"name": 5}})
        self.assertEqual(st, 400)
        self.assertIn("not of type 'string'", body["msg"])
        st, body = s.raw("POST", "/api/instances", {"instance": {"name": "x"}})
        self.assertEqual(st, 400)
        self.assertIn("required", body["msg"])
        self.assertEqual(len(s.violations()), before + 6)
        # an unauthenticated request is 401 (and described as such)
        st, _ = s.raw("GET", "/api/instances", token=False)
        self.assertEqual(st, 401)

    def test_3_the_validator_checks_responses_against_the_description(self):
        sp = spec_mod.load()
        good = sp.example("instance.json")
        self.assertEqual(spec_mod.check_response(sp, "/api/instances/{id}", "GET", 200, good), [])
        bad = json.loads(json.dumps(good))
        bad["instance"]["id"] = "seven"
        self.assertTrue(spec_mod.check_response(sp, "/api/instances/{id}", "GET", 200, bad))
        bad2 = {"snapshots": [{"id": 1, "currentlyActive": "yes"}]}
        self.assertTrue(spec_mod.check_response(sp, "/api/instances/{id}/snapshots", "GET", 200, bad2))


if __name__ == "__main__":
    unittest.main()
