#!/usr/bin/env python3
"""A project-owned XAPI (XCP-ng / XenServer) stand-in for polyvisor's tests.

Speaks JSON-RPC (`POST /jsonrpc`, 1.0 and 2.0) and XML-RPC (`POST /`) over TLS on loopback,
keeps pool, host, SR, VDI, VBD, VM, VIF, network, task, VM_guest_metrics and console objects
and implements the messages the polyvisor driver (and the self-trust scenario) use, with
XAPI's semantics: power-state rules and their error codes (`VM_BAD_POWER_STATE`,
`VM_IS_TEMPLATE`, `OPERATION_NOT_ALLOWED`, `HANDLE_INVALID`, `UUID_INVALID`,
`SESSION_INVALID`, `SESSION_AUTHENTICATION_FAILED`, `HOST_IS_SLAVE`), `Async.*` twins that
return tasks which progress and complete after a short delay, snapshot and clone relations.

Every call is checked against XAPI's own API description (`xenapi.json`, kept beside this
file, see NOTE.md): a message that is not in it is `MESSAGE_METHOD_UNKNOWN`, a wrong number
of parameters is `MESSAGE_PARAMETER_COUNT_MISMATCH` (both are what XAPI answers). Records are
built from the schema's field list, so every returned record carries every field.
Protocol-level exceptions, as on a real host: `system.listMethods` (XML-RPC introspection,
used by npm xen-api) and `Async.<class>.<message>` for the non-implicit messages.

Usage: XAPI_STANDIN_PASSWORD=PW xapi_standin.py --host 127.0.9.2 --port 8443 --certdir DIR
       [--slave-host 127.0.9.12] [--task-delay 0.3] [--stall-host ADDR --stall-port P]
Prints one JSON line `{"listening": url, "fingerprint": ..., "ca_file": ...}` when ready.
Test hooks (not XAPI, plain HTTP paths on the same listener): `POST /debug/expire-sessions`,
`POST /debug/calls` (`{"calls", "logouts", "sessions", "tasks_dropped"}`: calls served,
sessions ended by `session.logout`, live sessions, tasks destroyed with their session).
"""
import argparse
import gzip
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid as uuidlib
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
NULL = "OpaqueRef:NULL"


def load_schema(path=None):
    path = path or os.path.join(HERE, "xenapi.json.gz")
    with gzip.open(path, "rt") as f:
        return {c["name"]: c for c in json.load(f)}


class Fail(Exception):
    """A XAPI error: code + parameters."""

    def __init__(self, code, *params):
        super().__init__(code)
        self.code = code
        self.params = [str(p) for p in params]


def default_of(ftype, default):
    """A field value from the schema's type and default."""
    if ftype.endswith(" ref"):
        return NULL
    if ftype.endswith(" set"):
        return []
    if ftype.endswith(" map"):
        return {}
    if ftype == "bool":
        return default == "true"
    if ftype == "int":
        try:
            return int(default)
        except (TypeError, ValueError):
            return 0
    if ftype == "float":
        try:
            return float(default)
        except (TypeError, ValueError):
            return 0.0
    if ftype == "datetime":
        return "19700101T00:00:00Z"
    if ftype.startswith("enum "):
        if default and default not in ("Null",):
            return default
        return None  # filled by the caller (first enum value)
    if default and default.startswith('"') and default.endswith('"'):
        return default[1:-1]
    return ""


def now_stamp():
    return time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())


class Xapi:
    """The object store and the messages. One lock: every call is atomic."""

    def __init__(self, schema, password, task_delay, master_address):
        self.schema = schema
        self.password = password
        self.task_delay = task_delay
        self.master_address = master_address
        self.lock = threading.RLock()
        self.objs = {}  # class -> ref -> record
        self.sessions = {}
        self.pending = []  # (due, task_ref, fn)
        self.calls = 0
        self.logouts = 0  # session.logout calls that ended a live session
        self.tasks_dropped = 0  # tasks destroyed with their session at logout
        self.enum_first = {}
        for c in schema.values():
            for e in c.get("enums", []):
                self.enum_first[e["name"]] = e["values"][0]["name"]
        self.seed()

    # ---- records -------------------------------------------------------------------------
    def new(self, cls, **fields):
        ref = "OpaqueRef:" + str(uuidlib.uuid4())
        rec = {}
        for f in self.schema[cls]["fields"]:
            v = default_of(f["type"], f.get("default"))
            if v is None and f["type"].startswith("enum "):
                v = self.enum_first.get(f["type"].split()[1], "")
            rec[f["name"]] = v
        if "uuid" in rec:
            rec["uuid"] = str(uuidlib.uuid4())
        for k, v in fields.items():
            if k not in rec:
                raise KeyError(f"{cls} has no field {k}")
            rec[k] = v
        self.objs.setdefault(cls, {})[ref] = rec
        return ref

    def get(self, cls, ref):
        rec = self.objs.get(cls, {}).get(ref)
        if rec is None:
            raise Fail("HANDLE_INVALID", cls, ref)
        return rec

    def destroy(self, cls, ref):
        self.get(cls, ref)
        del self.objs[cls][ref]

    def seed(self):
        self.host = self.new("host", name_label="xcp-sa1", hostname="xcp-sa1", address=self.master_address,
                             software_version={"product_brand": "XCP-ng", "product_version": "8.3.0",
                                               "platform_name": "XCP"}, enabled=True, API_version_major=2,
                             API_version_minor=21)
        self.pool = self.new("pool", name_label="polyvisor-pool", master=self.host)
        self.sr = self.new("SR", name_label="Local storage", type="ext", content_type="user",
                           physical_size=500 << 30, other_config={})
        self.fast_sr = self.new("SR", name_label="Fast storage", type="lvm", content_type="user",
                                physical_size=200 << 30)
        self.iso_sr = self.new("SR", name_label="ISO library", type="iso", content_type="iso")
        self.net = self.new("network", name_label="Pool-wide network associated with eth0", bridge="xenbr0",
                            MTU=1500)
        self.net2 = self.new("network", name_label="lab", bridge="xenbr1", MTU=1500)
        self.get("pool", self.pool)["default_SR"] = self.sr
        self.dom0 = self.new("VM", name_label="Control domain on host: xcp-sa1", is_control_domain=True,
                             power_state="Running", resident_on=self.host, domid=0)
        # A stock template (never listed by the driver) and a guest template.
        self.make_vm("Debian Bookworm 12", template=True, default_template=True, disks=0)
        self.tpl = self.make_vm("tpl-debian", template=True, cpus=2, mem_mb=2048, macs=["2E:5A:00:00:90:00"])
        self.web = self.make_vm("web-01", cpus=1, mem_mb=1024, macs=["2E:5A:00:00:01:00"], running=True)
        self.base = self.make_vm("base-vm", cpus=1, mem_mb=1024, macs=["2E:5A:00:00:01:03"])

    def make_vm(self, name, template=False, default_template=False, cpus=1, mem_mb=1024, macs=(), running=False,
                disks=1):
        mem = mem_mb << 20
        oc = {"default_template": "true"} if default_template else {}
        vm = self.new("VM", name_label=name, is_a_template=template, is_default_template=default_template,
                      VCPUs_max=cpus, VCPUs_at_startup=cpus, memory_static_max=mem, memory_dynamic_max=mem,
                      memory_dynamic_min=mem, memory_static_min=min(mem, 512 << 20), other_config=oc,
                      HVM_boot_policy="BIOS order", domain_type="hvm", actions_after_shutdown="destroy",
                      actions_after_reboot="restart", actions_after_crash="restart")
        for i in range(disks):
            vdi = self.new("VDI", name_label=f"{name} disk {i}", SR=self.sr, virtual_size=8 << 30, type="user")
            self.attach(vm, vdi, str(i))
        for i, mac in enumerate(macs):
            self.vif(vm, str(i), self.net, mac)
        con = self.new("console", protocol="rfb", VM=vm)
        self.get("VM", vm)["consoles"] = [con]
        self.get("console", con)["location"] = f"https://{self.master_address}/console?uuid={self.get('console', con)['uuid']}"
        if running:
            self.power_on(vm)
        self.refresh_ops(vm)
        return vm

    def attach(self, vm, vdi, device, type_="Disk"):
        vbd = self.new("VBD", VM=vm, VDI=vdi, userdevice=device, device=f"xvd{chr(97 + int(device))}",
                       type=type_, mode="RW", bootable=device == "0")
        self.get("VM", vm)["VBDs"].append(vbd)
        if vdi != NULL:
            self.get("VDI", vdi)["VBDs"].append(vbd)
            self.get("SR", self.get("VDI", vdi)["SR"])["VDIs"].append(vdi)
        return vbd

    def vif(self, vm, device, net, mac):
        ref = self.new("VIF", VM=vm, device=device, network=net, MAC=mac.lower(), MTU=1500)
        self.get("VM", vm)["VIFs"].append(ref)
        self.get("network", net)["VIFs"].append(ref)
        return ref

    def refresh_ops(self, vm):
        r = self.get("VM", vm)
        ps = r["power_state"]
        if r["is_a_template"] or r["is_a_snapshot"]:
            ops = ["clone", "copy", "provision", "destroy", "export"]
        elif ps == "Halted":
            ops = ["start", "clone", "copy", "snapshot", "destroy", "export", "make_into_template"]
        elif ps == "Running":
            ops = ["clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "suspend", "pause", "snapshot"]
        elif ps == "Paused":
            ops = ["unpause", "hard_shutdown", "hard_reboot", "snapshot"]
        else:
            ops = ["resume", "hard_shutdown", "snapshot"]
        r["allowed_operations"] = ops

    def power_on(self, vm):
        r = self.get("VM", vm)
        r["power_state"] = "Running"
        r["resident_on"] = self.host
        r["domid"] = 10 + len(self.objs["VM"])
        nets = {}
        for vif in r["VIFs"]:
            dev = self.get("VIF", vif)["device"]
            octet = int(r["uuid"].replace("-", "")[:2], 16) % 200 + 20
            ip = f"192.0.2.{octet}" if dev == "0" else f"198.51.100.{octet}"
            nets[f"{dev}/ip"] = ip
            nets[f"{dev}/ipv4/0"] = ip
            nets[f"{dev}/ipv6/0"] = f"2001:db8::{octet:x}"
        gm = self.new("VM_guest_metrics", os_version={"name": "Debian GNU/Linux 12", "distro": "debian"},
                      networks=nets, PV_drivers_detected=True, live=True, last_updated=now_stamp())
        if r["guest_metrics"] != NULL:
            self.objs["VM_guest_metrics"].pop(r["guest_metrics"], None)
        r["guest_metrics"] = gm

    def power_off(self, vm):
        r = self.get("VM", vm)
        r["power_state"] = "Halted"
        r["resident_on"] = NULL
        r["domid"] = -1
        if r["guest_metrics"] != NULL:
            self.objs["VM_guest_metrics"].pop(r["guest_metrics"], None)
            r["guest_metrics"] = NULL

    def vm_state(self, vm, *expected, op=None):
        r = self.get("VM", vm)
        if r["is_a_template"] or r["is_a_snapshot"]:
            raise Fail("VM_IS_TEMPLATE", vm, op or "")
        if r["power_state"] not in expected:
            raise Fail("VM_BAD_POWER_STATE", vm, expected[0].lower(), r["power_state"].lower())
        return r

    # ---- dispatch -------------------------------------------------------------------------
    def check_schema(self, method, params):
        """(class, message, async) after the xenapi.json checks."""
        if method == "system.listMethods":
            return "system", "listMethods", False
        parts = method.split(".")
        is_async = parts[0] == "Async"
        if is_async:
            parts = parts[1:]
        if len(parts) != 2 or parts[0] not in self.schema:
            raise Fail("MESSAGE_METHOD_UNKNOWN", method)
        cls, msg = parts
        m = next((m for m in self.schema[cls]["messages"] if m["name"] == msg), None)
        if m is None or (is_async and m.get("implicit")):
            raise Fail("MESSAGE_METHOD_UNKNOWN", method)
        want = len(m["params"])
        # login's version/originator are optional on the wire.
        if method == "session.login_with_password" and len(params) in (2, 3, 4):
            return cls, msg, False
        if len(params) != want:
            raise Fail("MESSAGE_PARAMETER_COUNT_MISMATCH", method, want, len(params))
        return cls, msg, is_async

    def call(self, method, params):
        with self.lock:
            self.calls += 1
            self.run_due()
            cls, msg, is_async = self.check_schema(method, params)
            if cls == "system":
                return self.list_methods()
            if cls == "session" and msg == "login_with_password":
                return self.login(params)
            session = params[0]
            if session not in self.sessions:
                raise Fail("SESSION_INVALID", session)
            args = params[1:]
            if cls == "session" and msg == "logout":
                # As XAPI: the session's tasks go with it (a pending one's work is dropped
                # too: `run_due` skips work whose task record is gone), so a later poll of
                # such a task reference answers HANDLE_INVALID.
                self.sessions.pop(session, None)
                self.logouts += 1
                for t, rec in list(self.objs.get("task", {}).items()):
                    if rec["other_config"].get("session") == session:
                        del self.objs["task"][t]
                        self.tasks_dropped += 1
                return ""
            if is_async:
                return self.start_task(session, cls, msg, args)
            return self.dispatch(cls, msg, args)

    def list_methods(self):
        out = []
        for c in self.schema.values():
            for m in c["messages"]:
                out.append(f"{c['name']}.{m['name']}")
        return out

    def login(self, params):
        uname, pwd = params[0], params[1]
        if uname != "root" or pwd != self.password:
            raise Fail("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
        ref = "OpaqueRef:" + str(uuidlib.uuid4())
        self.sessions[ref] = uname
        return ref

    def start_task(self, session, cls, msg, args):
        task = self.new("task", name_label=f"Async.{cls}.{msg}", status="pending", created=now_stamp(),
                        resident_on=self.host, progress=0.0, other_config={"session": session})
        due = time.monotonic() + self.task_delay
        self.pending.append((due, task, lambda: self.dispatch(cls, msg, args)))
        return task

    def run_due(self):
        now = time.monotonic()
        keep = []
        for due, task, fn in self.pending:
            rec = self.objs.get("task", {}).get(task)
            if rec is None:
                continue
            if now < due:
                rec["progress"] = round(max(0.0, 1.0 - (due - now) / max(self.task_delay, 0.001)), 2)
                keep.append((due, task, fn))
                continue
            try:
                res = fn()
                rec["status"] = "success"
                rec["result"] = task_result(res)
            except Fail as e:
                rec["status"] = "failure"
                rec["error_info"] = [e.code] + e.params
            rec["progress"] = 1.0
            rec["finished"] = now_stamp()
        self.pending = keep

    def dispatch(self, cls, msg, args):
        special = getattr(self, f"m_{cls}_{msg}", None)
        if special is not None:
            return special(*args)
        # Implicit messages: getters, setters, map edits, records, lookups.
        objs = self.objs.setdefault(cls, {})
        if msg == "get_all_records":
            return {r: dict(v) for r, v in objs.items()}
        if msg == "get_all":
            return list(objs)
        if msg == "get_record":
            return dict(self.get(cls, args[0]))
        if msg == "get_by_uuid":
            for r, v in objs.items():
                if v.get("uuid") == args[0]:
                    return r
            raise Fail("UUID_INVALID", cls, args[0])
        if msg == "get_by_name_label":
            return [r for r, v in objs.items() if v.get("name_label") == args[0]]
        if msg.startswith("get_"):
            return self.get(cls, args[0])[msg[4:]]
        if msg.startswith("set_"):
            self.get(cls, args[0])[msg[4:]] = args[1]
            return ""
        if msg.startswith("add_to_"):
            m = self.get(cls, args[0])[msg[7:]]
            if isinstance(m, list):
                if args[1] not in m:
                    m.append(args[1])
                return ""
            if args[1] in m:
                raise Fail("MAP_DUPLICATE_KEY", cls, msg[7:], args[0], args[1])
            m[args[1]] = args[2]
            return ""
        if msg.startswith("remove_from_"):
            m = self.get(cls, args[0])[msg[12:]]
            if isinstance(m, list):
                if args[1] in m:
                    m.remove(args[1])
            else:
                m.pop(args[1], None)
            return ""
        raise Fail("MESSAGE_METHOD_UNKNOWN", f"{cls}.{msg}")  # in the schema, not implemented here

    # ---- VM lifecycle -----------------------------------------------------------------------
    def m_VM_start(self, vm, paused, force):
        self.vm_state(vm, "Halted", op="start")
        self.power_on(vm)
        if paused:
            self.get("VM", vm)["power_state"] = "Paused"
        self.refresh_ops(vm)
        return ""

    def _to(self, vm, expected, fn, op):
        self.vm_state(vm, *expected, op=op)
        fn(vm)
        self.refresh_ops(vm)
        return ""

    def m_VM_clean_shutdown(self, vm):
        return self._to(vm, ("Running",), self.power_off, "clean_shutdown")

    def m_VM_hard_shutdown(self, vm):
        return self._to(vm, ("Running", "Paused", "Suspended"), self.power_off, "hard_shutdown")

    def m_VM_clean_reboot(self, vm):
        return self._to(vm, ("Running",), self.power_on, "clean_reboot")

    def m_VM_hard_reboot(self, vm):
        return self._to(vm, ("Running", "Paused"), self.power_on, "hard_reboot")

    def m_VM_suspend(self, vm):
        def f(v):
            self.get("VM", v)["power_state"] = "Suspended"
        return self._to(vm, ("Running",), f, "suspend")

    def m_VM_resume(self, vm, paused, force):
        def f(v):
            self.get("VM", v)["power_state"] = "Paused" if paused else "Running"
        return self._to(vm, ("Suspended",), f, "resume")

    def m_VM_pause(self, vm):
        def f(v):
            self.get("VM", v)["power_state"] = "Paused"
        return self._to(vm, ("Running",), f, "pause")

    def m_VM_unpause(self, vm):
        def f(v):
            self.get("VM", v)["power_state"] = "Running"
        return self._to(vm, ("Paused",), f, "unpause")

    def m_VM_set_is_a_template(self, vm, value):
        r = self.get("VM", vm)
        if r["is_a_snapshot"]:
            raise Fail("OPERATION_NOT_ALLOWED", "snapshots cannot be converted")
        if value and r["power_state"] != "Halted":
            raise Fail("VM_BAD_POWER_STATE", vm, "halted", r["power_state"].lower())
        r["is_a_template"] = bool(value)
        self.refresh_ops(vm)
        return ""

    def copy_vm(self, vm, name, sr, full, snapshot=False):
        src = self.get("VM", vm)
        if not src["is_a_template"] and not src["is_a_snapshot"] and src["power_state"] != "Halted" and not snapshot:
            raise Fail("VM_BAD_POWER_STATE", vm, "halted", src["power_state"].lower())
        skip = {"uuid", "VIFs", "VBDs", "consoles", "snapshots", "children", "guest_metrics", "metrics",
                "allowed_operations", "current_operations"}
        fields = {k: (json.loads(json.dumps(v))) for k, v in src.items() if k not in skip}
        fields["name_label"] = name
        fields["is_default_template"] = False
        fields["other_config"] = dict(src["other_config"])
        fields["other_config"].pop("default_template", None)
        if snapshot:
            fields.update(is_a_snapshot=True, is_a_template=True, snapshot_of=vm, snapshot_time=now_stamp())
        else:
            fields.update(is_a_snapshot=False, snapshot_of=NULL)
            if src["is_a_snapshot"]:
                fields["is_a_template"] = True  # a clone of a snapshot is a template, like the snapshot
        fields["parent"] = vm
        new = self.new("VM", **fields)
        if not snapshot:
            self.power_off(new)
            self.get("VM", new)["power_state"] = "Halted"
        for vbd in src["VBDs"]:
            b = self.get("VBD", vbd)
            nvdi = NULL
            if b["VDI"] != NULL:
                old = self.get("VDI", b["VDI"])
                target = sr if (full and sr != NULL) else old["SR"]
                self.get("SR", target)
                nvdi = self.new("VDI", name_label=old["name_label"], SR=target, virtual_size=old["virtual_size"],
                                type="user", is_a_snapshot=snapshot, snapshot_of=b["VDI"] if snapshot else NULL,
                                sm_config={} if full else {"vhd-parent": old["uuid"]})
            self.attach(new, nvdi, b["userdevice"], b["type"])
        for vif in src["VIFs"]:
            v = self.get("VIF", vif)
            self.vif(new, v["device"], v["network"], v["MAC"] if snapshot else random_mac())
        con = self.new("console", protocol="rfb", VM=new)
        self.get("console", con)["location"] = f"https://{self.master_address}/console?uuid={self.get('console', con)['uuid']}"
        self.get("VM", new)["consoles"] = [con]
        self.get("VM", vm)["children"].append(new)
        if snapshot:
            self.get("VM", vm)["snapshots"].append(new)
            self.get("VM", new)["power_state"] = "Halted"
        self.refresh_ops(new)
        return new

    def m_VM_clone(self, vm, name):
        return self.copy_vm(vm, name, NULL, full=False)

    def m_VM_copy(self, vm, name, sr):
        return self.copy_vm(vm, name, sr, full=True)

    def m_VM_snapshot(self, vm, name, ignore_vdis):
        r = self.get("VM", vm)
        if r["is_a_template"] or r["is_a_snapshot"]:
            raise Fail("VM_IS_TEMPLATE", vm, "snapshot")
        return self.copy_vm(vm, name, NULL, full=False, snapshot=True)

    def m_VM_provision(self, vm):
        r = self.get("VM", vm)
        if not r["is_a_template"]:
            raise Fail("VM_BAD_POWER_STATE", vm, "template", "vm")  # XAPI: provision needs a template
        return ""

    def m_VM_revert(self, snap):
        s = self.get("VM", snap)
        if not s["is_a_snapshot"]:
            raise Fail("VM_NOT_A_SNAPSHOT" if False else "OPERATION_NOT_ALLOWED", "not a snapshot")
        vm = s["snapshot_of"]
        r = self.get("VM", vm)
        for k in ("VCPUs_max", "VCPUs_at_startup", "memory_static_max", "memory_dynamic_max",
                  "memory_dynamic_min", "memory_static_min"):
            r[k] = s[k]
        self.power_off(vm)
        self.refresh_ops(vm)
        return ""

    def m_VM_destroy(self, vm):
        r = self.get("VM", vm)
        if r["is_control_domain"]:
            raise Fail("OPERATION_NOT_ALLOWED", "control domain")
        if r["power_state"] != "Halted" and not r["is_a_snapshot"]:
            raise Fail("VM_BAD_POWER_STATE", vm, "halted", r["power_state"].lower())
        for vbd in list(r["VBDs"]):
            b = self.objs["VBD"].pop(vbd)
            if b["VDI"] != NULL and b["VDI"] in self.objs["VDI"]:
                self.objs["VDI"][b["VDI"]]["VBDs"].remove(vbd)
        for vif in list(r["VIFs"]):
            v = self.objs["VIF"].pop(vif)
            self.get("network", v["network"])["VIFs"].remove(vif)
        for con in r["consoles"]:
            self.objs["console"].pop(con, None)
        if r["snapshot_of"] in self.objs["VM"]:
            self.objs["VM"][r["snapshot_of"]]["snapshots"].remove(vm)
        for other in self.objs["VM"].values():
            if vm in other["children"]:
                other["children"].remove(vm)
            if other["snapshot_of"] == vm:
                other["snapshot_of"] = NULL
        if r["guest_metrics"] != NULL:
            self.objs["VM_guest_metrics"].pop(r["guest_metrics"], None)
        del self.objs["VM"][vm]
        return ""

    def m_VM_set_VCPUs_max(self, vm, value):
        r = self.vm_state(vm, "Halted")
        if int(value) < int(r["VCPUs_at_startup"]) or int(value) < 1:
            raise Fail("VALUE_NOT_SUPPORTED", "VCPUs_max", value, "VCPUs_max must be >= VCPUs_at_startup")
        r["VCPUs_max"] = int(value)
        return ""

    def m_VM_set_VCPUs_at_startup(self, vm, value):
        r = self.get("VM", vm)
        if int(value) > int(r["VCPUs_max"]) or int(value) < 1:
            raise Fail("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", value, "VCPUs_at_startup must be <= VCPUs_max")
        r["VCPUs_at_startup"] = int(value)
        return ""

    def m_VM_set_memory_limits(self, vm, smin, smax, dmin, dmax):
        r = self.vm_state(vm, "Halted")
        smin, smax, dmin, dmax = int(smin), int(smax), int(dmin), int(dmax)
        if not (0 <= smin <= dmin <= dmax <= smax):
            raise Fail("MEMORY_CONSTRAINT_VIOLATION", "Memory limits must satisfy: static_min <= dynamic_min <= "
                       "dynamic_max <= static_max")
        r.update(memory_static_min=smin, memory_static_max=smax, memory_dynamic_min=dmin, memory_dynamic_max=dmax)
        return ""

    def m_VIF_create(self, args):
        vm, net = args.get("VM", NULL), args.get("network", NULL)
        r = self.get("VM", vm)
        self.get("network", net)
        dev = str(args.get("device", ""))
        if any(self.get("VIF", v)["device"] == dev for v in r["VIFs"]):
            raise Fail("DEVICE_ALREADY_EXISTS", dev)
        mac = args.get("MAC") or random_mac()
        return self.vif(vm, dev, net, mac)

    def m_VIF_destroy(self, vif):
        v = self.get("VIF", vif)
        self.get("VM", v["VM"])["VIFs"].remove(vif)
        self.get("network", v["network"])["VIFs"].remove(vif)
        del self.objs["VIF"][vif]
        return ""

    def m_VDI_destroy(self, vdi):
        d = self.get("VDI", vdi)
        for vbd in d["VBDs"]:
            vm = self.get("VBD", vbd)["VM"]
            if self.get("VM", vm)["power_state"] != "Halted":
                raise Fail("VDI_IN_USE", vdi, "destroy")
        for vbd in list(d["VBDs"]):
            self.objs["VBD"][vbd]["VDI"] = NULL
        self.get("SR", d["SR"])["VDIs"].remove(vdi)
        del self.objs["VDI"][vdi]
        return ""

    def m_task_destroy(self, task):
        self.destroy("task", task)
        return ""

    def m_task_cancel(self, task):
        rec = self.get("task", task)
        if rec["status"] == "pending":
            self.pending = [p for p in self.pending if p[1] != task]
            rec["status"] = "cancelled"
        return ""

    def expire_sessions(self):
        with self.lock:
            self.sessions.clear()


def task_result(res):
    """A task's `result`: XML-RPC-encoded value; a plain string is `<value>text</value>` as XAPI writes it."""
    if res in ("", None):
        return ""
    if isinstance(res, str):
        return "<value>" + res.replace("&", "&amp;").replace("<", "&lt;") + "</value>"
    out = xmlrpc.client.dumps((to_xmlrpc(res),))
    return out[len("<params>\n<param>\n"):-len("</param>\n</params>\n")].strip()


def random_mac():
    b = os.urandom(5)
    return "2e:" + ":".join(f"{x:02x}" for x in b)


def to_xmlrpc(v):
    """XAPI's XML-RPC encoding: ints travel as strings."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return {str(k): to_xmlrpc(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_xmlrpc(x) for x in v]
    return v


def from_xmlrpc_params(method, params):
    return list(params)


def make_handler(xapi, slave_of=None, stall=False):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if os.environ.get("XAPI_STANDIN_DEBUG"):
                sys.stderr.write("standin: " + fmt % args + "\n")

        def setup(self):
            super().setup()
            # Headers and body leave as separate writes: without this, Nagle + delayed ACK add
            # ~40 ms to every call on a kept-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n)
            if stall:
                time.sleep(3600)
                return
            if self.path == "/debug/expire-sessions":
                xapi.expire_sessions()
                return self.send(200, "text/plain", b"ok")
            if self.path == "/debug/calls":
                with xapi.lock:
                    body = {"calls": xapi.calls, "logouts": xapi.logouts, "sessions": len(xapi.sessions),
                            "tasks_dropped": xapi.tasks_dropped}
                return self.send(200, "application/json", json.dumps(body).encode())
            if self.path.startswith("/jsonrpc"):
                return self.jsonrpc(raw)
            if self.path in ("/", "/RPC2"):
                return self.xmlrpc(raw)
            self.send(404, "text/plain", b"not found")

        def run(self, method, params):
            if slave_of is not None and method == "session.login_with_password":
                raise Fail("HOST_IS_SLAVE", slave_of)
            return xapi.call(method, params)

        def jsonrpc(self, raw):
            try:
                req = json.loads(raw)
                method, params, rid = req["method"], req.get("params", []), req.get("id")
            except Exception:
                return self.send(400, "application/json", b'{"error":"bad request"}')
            v2 = req.get("jsonrpc") == "2.0"
            try:
                res = self.run(method, params)
                body = {"jsonrpc": "2.0", "result": res, "id": rid} if v2 else {"result": res, "error": None, "id": rid}
            except Fail as e:
                if v2:
                    body = {"jsonrpc": "2.0", "error": {"code": 1, "message": e.code, "data": e.params}, "id": rid}
                else:
                    body = {"result": None, "error": [e.code] + e.params, "id": rid}
            self.send(200, "application/json", json.dumps(body).encode())

        def xmlrpc(self, raw):
            params, method = xmlrpc.client.loads(raw, use_builtin_types=True)
            try:
                res = self.run(method, from_xmlrpc_params(method, params))
                out = {"Status": "Success", "Value": to_xmlrpc(res)}
            except Fail as e:
                out = {"Status": "Failure", "ErrorDescription": [e.code] + e.params}
            body = xmlrpc.client.dumps((out,), methodresponse=True, allow_none=False).encode()
            self.send(200, "text/xml", body)

    return H


def make_cert(certdir, hosts):
    os.makedirs(certdir, exist_ok=True)
    crt, key = os.path.join(certdir, "xapi.crt"), os.path.join(certdir, "xapi.key")
    if not (os.path.exists(crt) and os.path.exists(key)):
        san = ",".join(f"IP:{h}" for h in hosts) + ",DNS:localhost"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "30", "-subj", "/CN=xapi-standin", "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert(open(crt).read())
    fp = hashlib.sha256(der).hexdigest().upper()
    return crt, key, ":".join(fp[i:i + 2] for i in range(0, 64, 2))


def serve(host, port, handler, crt, key):
    srv = ThreadingHTTPServer((host, port), handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.9.2")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--certdir", required=True)
    ap.add_argument("--password", default=os.environ.get("XAPI_STANDIN_PASSWORD"),
                    help="root password (default: $XAPI_STANDIN_PASSWORD, kept off the command line)")
    ap.add_argument("--task-delay", type=float, default=0.3)
    ap.add_argument("--slave-host", help="also listen here (same port) as a pool member answering HOST_IS_SLAVE")
    ap.add_argument("--stall-host", help="also listen here (same port): accept and never answer")
    ap.add_argument("--schema")
    a = ap.parse_args()
    if not a.password:
        ap.error("--password or XAPI_STANDIN_PASSWORD is required")
    hosts = [a.host] + [h for h in (a.slave_host, a.stall_host) if h]
    crt, key, fp = make_cert(a.certdir, hosts)
    xapi = Xapi(load_schema(a.schema), a.password, a.task_delay, a.host)
    srv = serve(a.host, a.port, make_handler(xapi), crt, key)
    port = srv.server_address[1]  # --port 0: a free port, shared by the extra listeners
    if a.slave_host:
        serve(a.slave_host, port, make_handler(xapi, slave_of=a.host), crt, key)
    if a.stall_host:
        serve(a.stall_host, port, make_handler(xapi, stall=True), crt, key)
    info = {"listening": f"https://{a.host}:{port}", "fingerprint": fp, "ca_file": crt,
            "vms": {r["name_label"]: r["uuid"] for r in xapi.objs["VM"].values()}}
    print(json.dumps(info), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
