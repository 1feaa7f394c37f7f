#!/usr/bin/env python3
"""A project-owned, stateful stand-in of the HPE VM Essentials (Morpheus) API endpoints the
polyvisor `hpevme` driver uses. It earns trust in its own tests (test_standin.py): every
request it handles and every JSON response it sends is validated against the official
OpenAPI description (spec.py); objects are shaped from the description's own examples; HPE's
`morpheus-python-sdk` drives a scenario through it.

A request the description rejects (unknown path, undeclared query parameter, missing
required field, wrong type) is answered 400 `{"msg": "stand-in: ..."}` and recorded; a
response that does not match is recorded too. Both lists are served at
`GET /__standin/violations` (the `/__standin/` paths are this stand-in's own test controls,
outside the Morpheus API).

The provisioning catalog (cloud `vme-cluster` = 5, instance types `HPE VM`/`mvm` = 50 with
layouts 60 and 61 and `Ubuntu` = 51 with layout 62, service plans 70-72 of 1/2/4 CPUs, virtual
images `ubuntu-22.04` = 80 and the ISO `debian-12-netinst.iso` = 81) is built from the
description's examples; `POST /api/instances` refuses what a real appliance would (unknown
cloud, group, type, a layout of another type, a plan not offered, an unknown image, a taken
name) and provisions (`provisioning`, then `running`).

Power transitions, clones, snapshots and removals take `--delay` seconds (default 0.6), like
the asynchronous work of a real appliance; clones boot (Morpheus starts a clone). Power
actions and removals are recorded as processes in the instance's history
(`GET /api/instances/{id}/history`), shaped from the description's process example, with type
codes `start`, `stop`, `restart`, `suspend`, `delete` (the description's examples name only
provisioning codes). `POST /__standin/fail-process {"code": "stop", "error": "..."}` makes
the next process of that type fail on the "cluster": the instance returns to its former
state (a removal leaves the record) and the process ends `failed` with that error.

Usage: standin.py --host 127.0.9.4 --port 8443 --certdir DIR --token T --username U
       --password P [--delay S] [--no-tls]; prints one JSON line when ready.
"""

import argparse
import copy
import datetime
import hashlib
import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec as spec_mod  # noqa: E402

TERMINAL = {"running", "stopped", "suspended", "failed"}


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    def __init__(self, spec, delay, token, username, password):
        self.spec = spec
        self.delay = delay
        self.lock = threading.RLock()
        self.instances = {}
        self.snapshots = {}  # id -> snapshot dict (+ "_instance")
        self.processes = {}
        self.pending = []  # (due, fn)
        self.next_id = 1000
        self.static_token = token
        self.username, self.password = username, password
        self.grant_tokens = {}  # access token -> refresh token
        self.violations = []
        self.failing_processes = {}  # process type code -> [error, ...] (next ones fail)
        self.faults = []  # {"method","path","status","count","retry_after"}
        self.failing_provisions = []  # error messages for the next provisions, which then fail
        self.requests = []  # (method, path) log
        self.instance_example = spec.example("instance.json")["instance"]
        self.snapshot_example = spec.example("instanceSnapshots.json")["snapshots"][0]
        self.process_example = spec.example("process.json")["process"]
        self.group = {"id": 1, "name": "polyvisor-ci"}
        self.catalog_from_examples()

    def catalog_from_examples(self):
        """The provisioning catalog (clouds, instance types, their layouts, service plans,
        virtual images), each object a copy of the description's own example with HVM values."""
        sp = self.spec
        zone = sp.example("zones.json")["zones"][0]
        zone.update({"id": 5, "uuid": "00000000-0000-4000-a000-000000000005", "name": "vme-cluster", "code": "vmecl",
                     "zoneType": {"id": 43, "code": "mvm", "name": "HPE VM"}, "zoneTypeId": 43})
        self.zones = {5: zone}
        itype = sp.example("instanceTypesProvisioning.json")["instanceTypes"][0]
        itype.update({"id": 50, "name": "HPE VM", "code": "mvm", "description": "HPE VM Essentials VM",
                      "provisionTypeCode": "mvm",
                      "instanceTypeLayouts": [{"id": 60, "name": "Single HPE VM", "provisionTypeCode": "mvm"},
                                              {"id": 61, "name": "HPE VM from ISO", "provisionTypeCode": "mvm"}]})
        other = sp.example("instanceTypesProvisioning.json")["instanceTypes"][0]
        other.update({"id": 51, "name": "Ubuntu", "code": "ubuntu", "instanceTypeLayouts": [
            {"id": 62, "name": "Ubuntu on HPE VM", "provisionTypeCode": "mvm"}]})
        self.instance_types = {50: itype, 51: other}
        self.layouts = {}
        for lid, tid, name, code in [(60, 50, "Single HPE VM", "mvm-1.0-single"), (61, 50, "HPE VM from ISO", "mvm-iso"),
                                     (62, 51, "Ubuntu on HPE VM", "mvm-ubuntu-22.04-single")]:
            lay = sp.example("instanceTypeLayouts.json")["instanceTypeLayouts"][0]
            t = self.instance_types[tid]
            lay.update({"id": lid, "name": name, "code": code,
                        "instanceType": {"id": tid, "name": t["name"], "code": t["code"]},
                        "provisionType": {"id": 43, "code": "mvm", "name": "HPE VM"}})
            self.layouts[lid] = lay
        self.plans = {}
        for pid, cores, mem_mb in [(70, 1, 1024), (71, 2, 4096), (72, 4, 8192)]:
            plan = sp.example("instancesServicePlans.json")["plans"][0]
            plan.update({"id": pid, "value": pid, "code": "mvm-%dcpu-%dgb" % (cores, mem_mb // 1024),
                         "name": "%d CPU, %dGB Memory" % (cores, mem_mb // 1024), "maxCpu": cores, "maxCores": cores,
                         "maxMemory": mem_mb * 1024 * 1024})
            self.plans[pid] = plan
        self.networks = {}
        for nid, name, vlan in [(90, "vm-lan", None), (91, "vlan-100", 100)]:
            net = sp.example("networks.json")["networks"][0]
            net.update({"id": nid, "name": name, "displayName": name, "vlanId": vlan,
                        "zone": {"id": 5, "name": "vme-cluster"}})
            self.networks[nid] = net
        self.images = {}
        for vid, name, itype_code in [(80, "ubuntu-22.04", "qcow2"), (81, "debian-12-netinst.iso", "iso")]:
            img = sp.example("virtualImages.json")["virtualImages"][0]
            img.update({"id": vid, "name": name, "imageType": itype_code})
            self.images[vid] = img

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def later(self, fn, delay=None):
        self.pending.append((time.monotonic() + (self.delay if delay is None else delay), fn))

    def tick(self):
        """Runs every transition that is due (called on each request and by a timer)."""
        with self.lock:
            now = time.monotonic()
            due = [p for p in self.pending if p[0] <= now]
            self.pending = [p for p in self.pending if p[0] > now]
            for _, fn in sorted(due, key=lambda p: p[0]):
                fn()

    # ---- objects shaped from the description's examples ----
    def make_instance(self, name, status, cores=2, memory_mb=2048, tags=None, mac=None, ip=None, catalog=None):
        iid = self.new_id()
        i = copy.deepcopy(self.instance_example)
        mac = mac or "00:50:56:%02x:%02x:%02x" % ((iid >> 16) & 255, (iid >> 8) & 255, iid & 255)
        ip = ip or "192.0.2.%d" % (iid % 200 + 20)
        i.update(
            {
                "id": iid,
                "uuid": "00000000-0000-4000-8000-%012d" % iid,
                "name": name,
                "displayName": name,
                "description": None,
                "status": status,
                "tags": [{"id": self.new_id(), "name": t["name"], "value": t.get("value")} for t in (tags or [])],
                "labels": [],
                "maxCores": cores,
                "maxMemory": memory_mb * 1024 * 1024,
                "containers": [iid + 500000],
                "servers": [iid + 200000],
                "hostName": name,
                "dateCreated": now_iso(),
                "lastUpdated": now_iso(),
                "statusDate": now_iso(),
                "locked": False,
                "isBusy": False,
                "group": {"id": self.group["id"], "name": self.group["name"]},
            }
        )
        if catalog:
            i.update(catalog)
        i["interfaces"][0]["ipAddress"] = None
        cd = i["containerDetails"][0]
        cd["id"] = iid + 500000
        cd["name"] = "%s_%d" % (name, cd["id"])
        cd["server"]["id"] = iid + 200000
        cd["server"]["name"] = name
        nic = cd["server"]["interfaces"][0]
        nic["macAddress"] = mac
        nic["_ip"] = ip
        self.instances[iid] = i
        self.show_ip(i)
        return i

    def show_ip(self, i):
        """A running guest reports its IPv4 address (the agent's view); others none."""
        cd = i["containerDetails"][0]
        nic = cd["server"]["interfaces"][0]
        ip = nic.get("_ip") if i["status"] == "running" else None
        nic["ipAddress"] = ip
        i["interfaces"][0]["ipAddress"] = ip
        cd["ip"] = ip or "0.0.0.0"
        cd["internalIp"] = ip or "0.0.0.0"

    def set_status(self, i, status):
        i["status"] = status
        i["statusDate"] = now_iso()
        i["lastUpdated"] = now_iso()
        i["isBusy"] = status not in TERMINAL
        self.show_ip(i)

    def public(self, i):
        out = copy.deepcopy(i)
        for nic in out["containerDetails"][0]["server"]["interfaces"]:
            nic.pop("_ip", None)
        out.pop("_provisioned", None)
        return out

    def new_process(self, kind, instance, name):
        pid = self.new_id()
        p = copy.deepcopy(self.process_example)
        p.update(
            {
                "id": pid,
                "uniqueId": "00000000-0000-4000-9000-%012d" % pid,
                "processType": {"code": kind, "name": kind},
                "displayName": name,
                "instanceId": instance["id"],
                "containerId": instance["containers"][0],
                "serverId": instance["servers"][0],
                "containerName": instance["containerDetails"][0]["name"],
                "status": "running",
                "percent": 0,
                "startDate": now_iso(),
                "dateCreated": now_iso(),
                "lastUpdated": now_iso(),
            }
        )
        p.pop("endDate", None)  # not nullable in the description: absent while running
        p.pop("duration", None)
        self.processes[pid] = p
        return p

    def power_process(self, i, action, via, to):
        """A power action: the instance goes `via` then `to`, recorded as a process of type
        `action` in its history; a failure queued with `/__standin/fail-process` for that
        type leaves the instance in its former state and the process failed with the error."""
        before = i["status"]
        self.set_status(i, via)
        proc = self.new_process(action, i, i["name"])
        queue = self.failing_processes.get(action) or []
        error = queue.pop(0) if queue else None
        iid = i["id"]

        def done():
            inst = self.instances.get(iid)
            if error:
                if inst is not None and inst["status"] == via:
                    self.set_status(inst, before)
                proc["error"] = error
                self.finish_process(proc, "failed")
                return
            if inst is not None and inst["status"] == via:
                self.set_status(inst, to)
            self.finish_process(proc)

        self.later(done)

    def finish_process(self, p, status="complete"):
        p.update({"status": status, "percent": 100, "endDate": now_iso(), "lastUpdated": now_iso()})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "polyvisor-hpevme-standin"

    def log_message(self, fmt, *args):
        if os.environ.get("STANDIN_LOG"):
            sys.stderr.write("standin: " + fmt % args + "\n")

    @property
    def st(self):
        return self.server.state

    def send_json(self, status, body, template=None, method=None, headers=None):
        if template:
            for p in spec_mod.check_response(self.st.spec, template, method, status, body):
                self.st.violations.append({"kind": "response", "op": "%s %s" % (method, template), "problem": p})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        st = self.st
        st.tick()
        if path.startswith("/__standin/"):
            return self.control(method, path, raw)
        body = None
        if raw:
            try:
                if ctype == "application/x-www-form-urlencoded":
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                else:
                    body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                return self.send_json(400, {"success": False, "msg": "stand-in: body is not valid JSON"})
        with st.lock:
            st.requests.append((method, path))
            template, problems = spec_mod.check_request(st.spec, method, path, query, body, ctype)
            if problems:
                st.violations.append({"kind": "request", "op": "%s %s" % (method, path), "problem": problems})
                status = 404 if template is None else 400
                return self.send_json(status, {"success": False, "msg": "stand-in: " + "; ".join(problems)})
            for f in st.faults:
                if f["count"] > 0 and f["method"] == method and f["path"] == path:
                    f["count"] -= 1
                    if f["status"] == "hang":
                        break
                    hdrs = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else {}
                    msg = {409: "Instance is busy", 429: "Too Many Requests - slow down"}.get(f["status"], "fault")
                    return self.send_json(f["status"], {"success": False, "msg": msg}, template, method, hdrs)
            else:
                f = None
        if f is not None and f["status"] == "hang":
            time.sleep(3600)
            return
        if template != "/oauth/token" and not self.authorized():
            return self.send_json(401, {"error": "invalid_token", "error_description": "Invalid access token"})
        with st.lock:
            try:
                status, out = self.route(method, template, path, query, body)
            except KeyError:
                status, out = 404, {"success": False, "msg": "Specified Resource Not Found"}
        self.send_json(status, out, template, method)

    def authorized(self):
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return False
        tok = auth[len("Bearer ") :]
        return tok == self.st.static_token or tok in self.st.grant_tokens

    def control(self, method, path, raw):
        st = self.st
        with st.lock:
            if path == "/__standin/violations":
                return self.send_json(200, {"violations": st.violations})
            if path == "/__standin/requests":
                return self.send_json(200, {"requests": st.requests})
            if path == "/__standin/reset-log" and method == "POST":
                st.violations.clear()
                st.requests.clear()
                return self.send_json(200, {"ok": True})
            if path == "/__standin/expire-tokens" and method == "POST":
                st.grant_tokens.clear()
                return self.send_json(200, {"ok": True})
            if path == "/__standin/fault" and method == "POST":
                f = json.loads(raw)
                f.setdefault("count", 1)
                st.faults.append(f)
                return self.send_json(200, {"ok": True})
            if path.startswith("/__standin/provisioned/") and method == "GET":
                i = st.instances.get(int(path.rsplit("/", 1)[1]))
                return self.send_json(200, {"provisioned": (i or {}).get("_provisioned")})
            if path == "/__standin/fail-provision" and method == "POST":
                st.failing_provisions.append(json.loads(raw)["error"])
                return self.send_json(200, {"ok": True})
            if path == "/__standin/fail-process" and method == "POST":
                f = json.loads(raw)
                st.failing_processes.setdefault(f["code"], []).append(f["error"])
                return self.send_json(200, {"ok": True})
            if path == "/__standin/instances" and method == "POST":
                f = json.loads(raw)
                i = st.make_instance(f["name"], f.get("status", "stopped"), tags=f.get("tags"))
                return self.send_json(200, {"id": i["id"]})
        return self.send_json(404, {"msg": "unknown control"})

    # ---- the Morpheus endpoints ----
    def route(self, method, template, path, query, body):
        st = self.st
        ok = {"success": True}
        iid = None
        parts = path.split("/")
        if template.startswith("/api/instances/{id}"):
            iid = int(parts[3])
        inst = st.instances[iid] if iid is not None else None
        key = (method, template)
        if key == ("POST", "/oauth/token"):
            grant = query["grant_type"][0]
            if grant == "password":
                if (body or {}).get("username") != st.username or (body or {}).get("password") != st.password:
                    return 400, {"error": "invalid_grant", "error_description": "Bad credentials"}
            elif (body or {}).get("refresh_token") not in st.grant_tokens.values():
                return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
            tok, ref = secrets.token_hex(16), secrets.token_hex(16)
            st.grant_tokens[tok] = ref
            return 200, {"access_token": tok, "refresh_token": ref, "expires_in": 3600, "token_type": "bearer",
                         "scope": "write"}
        if key == ("GET", "/api/groups"):
            groups = [st.group] if query.get("name", [st.group["name"]])[0] == st.group["name"] else []
            full = []
            for g in groups:
                full.append({"id": g["id"], "name": g["name"], "code": None, "location": None, "accountId": 1,
                             "visibility": "private", "active": True, "zones": [], "stats": {}, "serverCount": 0,
                             "labels": [], "dateCreated": now_iso(), "lastUpdated": now_iso()})
            return 200, {"groups": full, "meta": {"offset": 0, "max": 25, "size": len(full), "total": len(full)}}
        if key == ("GET", "/api/zones"):
            items = [z for z in st.zones.values() if "name" not in query or z["name"] == query["name"][0]]
            return 200, {"zones": items, "meta": {"offset": 0, "max": 25, "size": len(items), "total": len(items)}}
        if key == ("GET", "/api/zones/{id}"):
            return 200, {"zone": st.zones[int(parts[3])]}
        if key == ("GET", "/api/instance-types"):
            items = [t for t in st.instance_types.values()
                     if all(f not in query or t[f] == query[f][0] for f in ("name", "code"))]
            return 200, {"instanceTypes": items,
                         "meta": {"offset": 0, "max": 25, "size": len(items), "total": len(items)}}
        if key == ("GET", "/api/instance-types/{id}"):
            return 200, {"instanceType": st.instance_types[int(parts[3])]}
        if key == ("GET", "/api/library/instance-types/{instanceTypeId}/layouts"):
            tid = int(parts[4])
            st.instance_types[tid]  # noqa: B018 (404 for an unknown type)
            items = [lay for lay in st.layouts.values() if lay["instanceType"]["id"] == tid
                     and all(f not in query or lay[f] == query[f][0] for f in ("name", "code"))]
            return 200, {"instanceTypeLayouts": items,
                         "meta": {"offset": 0, "max": 25, "size": len(items), "total": len(items)}}
        if key == ("GET", "/api/instances/service-plans"):
            zone_ok = "zoneId" not in query or int(query["zoneId"][0]) in st.zones
            layout_ok = "layoutId" not in query or int(query["layoutId"][0]) in st.layouts
            plans = list(st.plans.values()) if zone_ok and layout_ok else []
            return 200, {"plans": plans}
        if key == ("GET", "/api/networks"):
            items = [n for n in st.networks.values()
                     if ("name" not in query or n["name"] == query["name"][0])
                     and ("zoneId" not in query or n["zone"]["id"] == int(query["zoneId"][0]))]
            return 200, {"networks": items, "meta": {"offset": 0, "max": 25, "size": len(items), "total": len(items)}}
        if key == ("GET", "/api/virtual-images"):
            items = [v for v in st.images.values()
                     if ("name" not in query or v["name"] == query["name"][0])
                     and ("imageType" not in query or v["imageType"] == query["imageType"][0])]
            return 200, {"virtualImages": items,
                         "meta": {"offset": 0, "max": 25, "size": len(items), "total": len(items)}}
        if key == ("GET", "/api/virtual-images/{virtualImageId}"):
            return 200, {"virtualImage": st.images[int(parts[3])]}
        if key == ("POST", "/api/instances"):
            return self.provision(body)
        if key == ("GET", "/api/instances"):
            items = sorted(st.instances.values(), key=lambda i: i["id"])
            if "name" in query:
                items = [i for i in items if i["name"] == query["name"][0]]
            offset = int(query.get("offset", ["0"])[0])
            mx = int(query.get("max", ["25"])[0])
            page = items[offset : offset + mx] if mx >= 0 else items[offset:]
            return 200, {"instances": [st.public(i) for i in page],
                         "meta": {"offset": offset, "max": mx, "size": len(page), "total": len(items)}}
        if key == ("GET", "/api/instances/{id}"):
            return 200, {"instance": st.public(inst)}
        if key == ("PUT", "/api/instances/{id}"):
            upd = (body or {}).get("instance") or {}
            if "name" in upd:
                inst["name"] = inst["displayName"] = upd["name"]
            if "labels" in upd:
                inst["labels"] = list(upd["labels"])
            if "tags" in upd:
                inst["tags"] = [{"id": st.new_id(), "name": t["name"], "value": t.get("value")} for t in upd["tags"]]
            for t in upd.get("removeTags") or []:
                inst["tags"] = [x for x in inst["tags"] if not (x["name"] == t["name"] and
                                                                (t.get("value") is None or x["value"] == t["value"]))]
            for t in upd.get("addTags") or []:
                inst["tags"] = [x for x in inst["tags"] if x["name"] != t["name"]]
                inst["tags"].append({"id": st.new_id(), "name": t["name"], "value": t.get("value")})
            inst["lastUpdated"] = now_iso()
            return 200, {"success": True, "instance": st.public(inst)}
        if key == ("DELETE", "/api/instances/{id}"):
            if inst["status"] in ("removing", "pendingRemoval"):
                return 200, ok
            before = inst["status"]
            st.set_status(inst, "removing")
            proc = st.new_process("delete", inst, inst["name"])
            error = st.failing_processes.get("delete", []).pop(0) if st.failing_processes.get("delete") else None

            def gone():
                if error:
                    # The cluster refused: the record stays, back in its former state.
                    if iid in st.instances:
                        st.set_status(st.instances[iid], before)
                    proc["error"] = error
                    st.finish_process(proc, "failed")
                    return
                st.finish_process(proc)
                st.instances.pop(iid, None)
                for sid in [s for s, v in st.snapshots.items() if v["_instance"] == iid]:
                    st.snapshots.pop(sid)

            st.later(gone)
            return 200, ok
        if method == "PUT" and template in ("/api/instances/{id}/start", "/api/instances/{id}/stop",
                                             "/api/instances/{id}/restart", "/api/instances/{id}/suspend"):
            action = template.rsplit("/", 1)[1]
            s = inst["status"]
            if s not in TERMINAL:
                return 409, {"success": False, "msg": "Instance is busy (%s)" % s}
            moves = {
                "start": (("stopped", "suspended", "failed"), "starting", "running"),
                "stop": (("running", "suspended"), "stopping", "stopped"),
                "restart": (("running",), "restarting", "running"),
                "suspend": (("running",), "suspending", "suspended"),
            }
            allowed, via, to = moves[action]
            if s in allowed:
                st.power_process(inst, action, via, to)
            elif action in ("restart", "suspend"):
                return 400, {"success": False, "msg": "Instance is not running"}
            return 200, {"success": True, "results": {}}
        if key == ("PUT", "/api/instances/{id}/resize"):
            o = (body or {}).get("servicePlanOptions") or {}
            if "maxCores" in o:
                inst["maxCores"] = o["maxCores"]
            if "maxMemory" in o:
                m = o["maxMemory"]
                inst["maxMemory"] = m * 1024 * 1024 if m < 1048576 else m
            return 200, {"success": True, "instance": st.public(inst)}
        if key == ("PUT", "/api/instances/{id}/clone"):
            b = body or {}
            name = b.get("name") or inst["name"] + "-clone"
            tags = b["tags"] if "tags" in b else [{"name": t["name"], "value": t["value"]} for t in inst["tags"]]
            c = st.make_instance(name, "provisioning", inst["maxCores"], inst["maxMemory"] // (1024 * 1024), tags)
            cid = c["id"]

            def booted():
                if cid in st.instances:
                    st.set_status(st.instances[cid], "running")

            st.later(booted, st.delay * 2)
            return 200, ok
        if key == ("PUT", "/api/instances/{id}/snapshot"):
            req = (body or {}).get("snapshot") or {}
            p = st.new_process("snapshot", inst, req.get("name") or inst["name"])
            sid = st.new_id()
            snap = copy.deepcopy(st.snapshot_example)
            snap.update({"id": sid, "name": req.get("name") or "%s.%d" % (inst["name"], int(time.time())),
                         "description": req.get("description"), "externalId": "snapshot-%d" % sid,
                         "status": "creating", "snapshotCreated": now_iso(), "dateCreated": now_iso(),
                         "memorySnapshot": bool(req.get("memorySnapshot")), "_instance": iid,
                         "currentlyActive": False})
            st.snapshots[sid] = snap

            def made():
                snap["status"] = "complete"
                st.finish_process(p)

            st.later(made)
            return 200, {"success": True, "processIds": [p["id"]]}
        if key == ("GET", "/api/instances/{id}/snapshots"):
            snaps = sorted((s for s in st.snapshots.values() if s["_instance"] == iid), key=lambda s: s["id"])
            return 200, {"snapshots": [{k: v for k, v in s.items() if k != "_instance"} for s in snaps]}
        if key == ("PUT", "/api/instances/{id}/revert-snapshot/{snapshotId}"):
            sid = int(float(parts[5]))
            if sid not in st.snapshots or st.snapshots[sid]["_instance"] != iid:
                raise KeyError(sid)
            for s in st.snapshots.values():
                if s["_instance"] == iid:
                    s["currentlyActive"] = s["id"] == sid
            return 200, ok
        if key == ("DELETE", "/api/snapshots/{id}"):
            sid = int(parts[3])
            st.snapshots.pop(sid)
            return 200, ok
        if key == ("GET", "/api/processes/{id}"):
            return 200, {"process": st.processes[int(parts[3])]}
        if key == ("GET", "/api/instances/{id}/history"):
            procs = [p for p in st.processes.values() if p["instanceId"] == iid]
            return 200, {"processes": procs, "meta": {"offset": 0, "max": 25, "size": len(procs), "total": len(procs)}}
        return 501, {"success": False, "msg": "stand-in: %s %s is not implemented" % (method, template)}


def _provision(self, b):
    """POST /api/instances: checks what a real appliance would refuse (unknown cloud, group,
    instance type, a layout of another type, a plan not offered, an unknown image), then
    provisions (status `provisioning`, then `running`)."""
    st = self.st
    inst = b["instance"]
    name = inst["name"]

    def refuse(msg):
        return 400, {"success": False, "msg": msg}

    zid = b.get("zoneId")
    if zid not in st.zones:
        return refuse("Cloud not found")
    if inst["site"]["id"] != st.group["id"]:
        return refuse("Group not found")
    itype = next((t for t in st.instance_types.values() if t["code"] == inst["instanceType"]["code"]), None)
    if itype is None:
        return refuse("Instance type not found")
    layout = st.layouts.get(inst["layout"]["id"])
    if layout is None or layout["instanceType"]["id"] != itype["id"]:
        return refuse("Layout not found for the instance type")
    plan = st.plans.get(inst["plan"]["id"])
    if plan is None:
        return refuse("Service plan not available")
    image_id = (b.get("config") or {}).get("imageId")
    if image_id is not None and image_id not in st.images:
        return refuse("Virtual image not found")
    if any(i["name"] == name for i in st.instances.values()):
        return refuse("Name must be unique")
    for nic in b.get("networkInterfaces") or []:
        ref = str(nic["network"]["id"])
        if not ref.startswith("network-") or int(ref[len("network-"):] or 0) not in st.networks:
            return refuse("Network not found")
    catalog = {
        "instanceType": {"id": itype["id"], "code": itype["code"], "category": "os", "name": itype["name"]},
        "layout": {"id": layout["id"], "name": layout["name"], "provisionTypeId": 43, "provisionTypeCode": "mvm"},
        "plan": {"id": plan["id"], "code": plan["code"], "name": plan["name"]},
        "cloud": {"id": zid, "name": st.zones[zid]["name"]},
    }
    tags = b.get("tags") or b.get("metadata") or []
    c = st.make_instance(name, "provisioning", plan["maxCores"], plan["maxMemory"] // (1024 * 1024), tags,
                         catalog=catalog)
    c["_provisioned"] = {"imageId": image_id, "volumes": b.get("volumes") or [],
                         "networkInterfaces": b.get("networkInterfaces") or []}
    cid = c["id"]
    proc = st.new_process("provision", c, name)
    error = st.failing_provisions.pop(0) if st.failing_provisions else None

    def booted():
        if cid in st.instances and st.instances[cid]["status"] == "provisioning":
            st.set_status(st.instances[cid], "failed" if error else "running")
        if error:
            proc["error"] = error
            st.finish_process(proc, "failed")
        else:
            st.finish_process(proc)

    st.later(booted, st.delay * 2)
    # The answer is the description's own example (`instanceCreateVmwareSuccess.json`) with
    # this instance over it. The description types it as oneOf(instanceCreateSuccess,
    # successError): an ordinary instance satisfies both schemas, which a oneOf rejects; the
    # example's instance fails the first (its `config.expose: [22]` and its nulls such as
    # `isBusy`, `statusDate`, `expireDays` where the schema does not allow null), so the example
    # validates. HPE's SDK, however, refuses `config.expose: [22]`; so the answer keeps the
    # example's nulls (which the SDK's optional fields accept) and this instance's own
    # `config`: both the description and the SDK accept it. The driver reads only `instance.id`.
    out = st.spec.example("instanceCreateVmwareSuccess.json")
    pub = st.public(c)
    for k in ("id", "uuid", "name", "displayName", "status", "tags", "instanceType", "layout", "plan", "cloud",
              "group", "maxCores", "maxMemory", "containers", "servers", "config"):
        out["instance"][k] = pub[k]
    out["success"] = True
    return 200, out


Handler.provision = _provision


def make_cert(certdir, host):
    """A throw-away CA and a server certificate it signs (rustls refuses a CA certificate
    as the server's own). Returns (ca file, leaf cert, leaf key, leaf SHA-256 fingerprint)."""
    os.makedirs(certdir, exist_ok=True)
    ca, ca_key = os.path.join(certdir, "ca.crt"), os.path.join(certdir, "ca.key")
    crt, key = os.path.join(certdir, "standin.crt"), os.path.join(certdir, "standin.key")
    if not all(os.path.exists(p) for p in (ca, crt, key)):
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
            "/CN=polyvisor hpevme test CA", "-keyout", ca_key, "-out", ca)
        csr = os.path.join(certdir, "standin.csr")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % host, "-keyout", key, "-out", csr)
        ext = os.path.join(certdir, "ext.cnf")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:localhost\n" % host)
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "3650",
            "-extfile", ext, "-out", crt)
    der = ssl.PEM_cert_to_DER_cert(open(crt).read())
    fp = ":".join("%02X" % b for b in hashlib.sha256(der).digest())
    return ca, crt, key, fp


def seed(st):
    """The contract's guests: a stopped source VM (RAS), a polyvisor template (CloudStack
    template_id) and a running foreign VM polyvisor must never touch."""
    src = st.make_instance("base-vm", "stopped", 1, 1024)
    tpl = st.make_instance("tpl-ubuntu", "stopped", 2, 2048, tags=[{"name": "polyvisor_template", "value": "true"}])
    foreign = st.make_instance("web-01", "running", 2, 4096, tags=[{"name": "application", "value": None}])
    return src, tpl, foreign


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--certdir")
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("--token", default=secrets.token_hex(16))
    ap.add_argument("--username", default="polyvisor")
    ap.add_argument("--password", default=secrets.token_hex(12))
    ap.add_argument("--delay", type=float, default=0.6)
    a = ap.parse_args()
    spec = spec_mod.load()
    st = State(spec, a.delay, a.token, a.username, a.password)
    src, tpl, foreign = seed(st)
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    srv.state = st
    ready = {"source_guest": str(src["id"]), "template_id": str(tpl["id"]), "foreign_guest": str(foreign["id"]),
             "spec_version": spec.version}
    scheme = "http"
    if not a.no_tls:
        ca, crt, key, fp = make_cert(a.certdir or os.path.join(os.getcwd(), "pki"), a.host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        ready.update({"ca_file": ca, "fingerprint": fp})
        scheme = "https"
    ready["listening"] = "%s://%s:%d" % (scheme, a.host, srv.server_address[1])

    def ticker():
        while True:
            time.sleep(0.1)
            st.tick()

    threading.Thread(target=ticker, daemon=True).start()
    print(json.dumps(ready), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
