#!/usr/bin/env python3
"""A project-owned WinRM (WS-Management over HTTPS) stand-in hosting a fake Hyper-V.

What it is:
- an HTTPS server (self-signed certificate made at start) answering POST /wsman with
  SOAP 1.2 envelopes of the WinRS shell protocol ([MS-WSMV]): shell Create, Command,
  Receive, Signal, Delete; SOAP faults shaped like Windows' (`w:InvalidSelectors`,
  `w:TimedOut` with WSManFault code 2150858793 when a Receive's OperationTimeout passes);
- authentication per TCP connection as HTTP.sys does it: NTLM (`Negotiate`/`NTLM` scheme,
  verified by pyspnego's NTLM acceptor against a credential file) and, when enabled, Basic;
- commands: `powershell.exe ... -EncodedCommand <UTF-16LE base64>` runs ONLY polyvisor's
  fixed scripts (crates/hyperv/scripts/*.ps1, loaded at start and matched verbatim after the
  data prelude) against an in-memory Hyper-V estate, printing cmdlet-shaped JSON, or
  failing with CLIXML error records on stderr like powershell.exe does; a few cmd.exe
  commands (`hostname`, `echo`, `cmd /c exit N`, `ipconfig`) answer so that generic
  WinRM clients (pywinrm, pypsrp) can be driven through it.
- test hook: every command run by the account `slowpoke` never finishes (a hung remote
  command); the Receive long-poll then answers w:TimedOut until the client gives up.

It cannot prove real cmdlet semantics beyond the shapes modelled here (see the crate README).
"""
import argparse
import base64
import copy
import datetime
import hashlib
import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import spnego
from spnego.channel_bindings import GssChannelBindings

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
A_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
A_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
A_COMMAND = SHELL_URI + "/Command"
A_RECEIVE = SHELL_URI + "/Receive"
A_SIGNAL = SHELL_URI + "/Signal"
DONE = SHELL_URI + "/CommandState/Done"
RUNNING = SHELL_URI + "/CommandState/Running"
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS_DIR = os.path.join(HERE, "..", "..", "crates", "hyperv", "scripts")
PRELUDE_RE = re.compile(
    r"\A\$ErrorActionPreference = 'Stop'\n\$ProgressPreference = 'SilentlyContinue'\n"
    r"\$pv = \[Text\.Encoding\]::UTF8\.GetString\(\[Convert\]::FromBase64String\('([A-Za-z0-9+/=]*)'\)\) \| ConvertFrom-Json\n"
)
HOSTNAME = "HV-STANDIN-01"
VHD_PATH = "D:\\Hyper-V\\polyvisor"
VM_PATH = "D:\\Hyper-V\\VMs"
SWITCH = "LAN"
LOCK = threading.RLock()


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the Hyper-V estate


class PsError(Exception):
    """A PowerShell error record: message, CategoryInfo category, error id, command."""

    def __init__(self, message, category, error_id, command):
        super().__init__(message)
        self.message, self.category, self.error_id, self.command = message, category, error_id, command


def new_mac(n):
    return "00155D%06X" % n


class Estate:
    def __init__(self):
        self.vms = {}
        self.files = {}  # path (lower) -> {"path", "parent"}
        self.n = 0x010000
        base = self.add_vm("base-vm", "Off", disk="C:\\Hyper-V\\Base\\base-vm.vhdx", cpus=2, mem_mb=2048)
        tpl = self.add_vm("tpl-ubuntu", "Off", disk="C:\\Hyper-V\\Base\\tpl-ubuntu.vhdx", cpus=2, mem_mb=2048)
        tpl["Notes"] = 'Ubuntu 22.04 golden image\npolyvisor:{"template":true}'
        web = self.add_vm("web-01", "Running", disk="C:\\Hyper-V\\Foreign\\web-01.vhdx", cpus=4, mem_mb=4096)
        web["Notes"] = "owned by the web team"
        self.base, self.tpl, self.web = base["Id"], tpl["Id"], web["Id"]

    def next_mac(self):
        self.n += 1
        return new_mac(self.n)

    def add_vm(self, name, state, disk, cpus, mem_mb, switch=SWITCH, gen=2, path=VM_PATH):
        vid = str(uuid.uuid4())
        self.files[disk.lower()] = {"path": disk, "parent": None}
        vm = {
            "Id": vid, "Name": name, "State": state, "Notes": "", "ProcessorCount": cpus,
            "MemoryStartup": mem_mb * 1024 * 1024, "Generation": gen, "Path": path + "\\" + name,
            "ComputerName": HOSTNAME,
            "NetworkAdapters": [{"Name": "Network Adapter", "MacAddress": self.next_mac(), "SwitchName": switch or "",
                                 "IPAddresses": []}],
            "HardDrives": [disk], "snapshots": [],
        }
        self.vms[vid] = vm
        self.refresh_ips(vm)
        return vm

    def refresh_ips(self, vm):
        # Integration services report addresses only while the guest runs.
        for i, a in enumerate(vm["NetworkAdapters"]):
            if vm["State"] == "Running" and a["SwitchName"]:
                last = int(a["MacAddress"][-2:], 16)
                a["IPAddresses"] = ["192.168.50.%d" % (10 + last % 200), "fe80::215:5dff:fe00:%x" % last]
            else:
                a["IPAddresses"] = []

    def view(self, vm):
        return {k: copy.deepcopy(v) for k, v in vm.items() if k != "snapshots"}

    def get(self, vid, cmd="Get-PvVm"):
        vm = self.vms.get(str(vid).lower())
        if not vm:
            raise PsError("Hyper-V was unable to find a virtual machine with ID %s." % vid, "ObjectNotFound",
                          "PolyvisorVmNotFound", cmd)
        return vm

    def by_name(self, name):
        return [v for v in self.vms.values() if v["Name"].lower() == str(name).lower()]


def invalid_state(cmd, vm):
    return PsError("'%s' failed to change state. The operation cannot be performed while the object is in its "
                   "current state." % vm["Name"], "InvalidOperation",
                   "InvalidOperation,Microsoft.HyperV.PowerShell.Commands.%s" % cmd.replace("-", ""), cmd)


def merge_checkpoints(estate, vm):
    """The last checkpoint is gone: Hyper-V merges the .avhdx chain back into the base disk."""
    chain = vm.get("avhdx", [])
    if not chain:
        return
    base = vm["HardDrives"][0]
    while base.lower() in estate.files and base in chain:
        base = estate.files[base.lower()]["parent"]
    for f in chain:
        estate.files.pop(f.lower(), None)
    vm["avhdx"] = []
    vm["HardDrives"][0] = base


def snap_view(s):
    return {"Name": s["Name"], "Id": s["Id"], "ParentSnapshotName": s["Parent"], "CreationTime": s["CreationTime"],
            "SnapshotType": "Standard"}


def run_script(estate, name, pv):
    """Executes one of polyvisor's fixed scripts; returns the JSON text it prints."""
    out = lambda o: json.dumps(o, separators=(",", ":"))  # noqa: E731  (ConvertTo-Json -Compress)
    with LOCK:
        if name == "probe":
            return out({"ComputerName": HOSTNAME, "VirtualMachinePath": VM_PATH, "VirtualHardDiskPath": VHD_PATH,
                        "VmCount": len(estate.vms)})
        if name == "list":
            return out([estate.view(v) for v in estate.vms.values()])
        if name == "get":
            return out(estate.view(estate.get(pv["id"])))
        if name == "power":
            vm = estate.get(pv["id"])
            st, act = vm["State"], pv["action"]
            if act == "start":
                if st in ("Off", "Saved"):
                    vm["State"] = "Running"
                elif st == "Paused":
                    raise invalid_state("Start-VM", vm)
            elif act in ("turnoff", "shutdown"):
                vm["State"] = "Off"
            elif act == "restart":
                if st != "Running":
                    raise invalid_state("Restart-VM", vm)
            elif act == "suspend":
                if st != "Running":
                    raise invalid_state("Suspend-VM", vm)
                vm["State"] = "Paused"
            elif act == "resume":
                if st != "Paused":
                    raise invalid_state("Resume-VM", vm)
                vm["State"] = "Running"
            elif act == "save":
                if st != "Running":
                    raise invalid_state("Save-VM", vm)
                vm["State"] = "Saved"
            else:
                raise PsError("unknown power action", "InvalidArgument", "PolyvisorBadAction", "Stop-Pv")
            estate.refresh_ips(vm)
            return out(estate.view(vm))
        if name == "notes":
            vm = estate.get(pv["id"])
            if vm["Notes"] != (pv.get("expect") or ""):
                raise PsError("the VM's notes changed meanwhile", "ResourceBusy", "PolyvisorNotesChanged", "Stop-Pv")
            vm["Notes"] = pv["notes"]
            return out(estate.view(vm))
        if name == "snapshot":
            vm = estate.get(pv["id"])
            snaps, op, sname = vm["snapshots"], pv["op"], pv.get("name")
            if op == "create":
                vm["snapshots"] = snaps = [s for s in snaps if s["Name"] != sname]
                parent = vm.get("current_snapshot")
                # The current disk becomes the checkpoint's (read-only) disk; writes go to a new .avhdx.
                cur = vm["HardDrives"][0]
                avhdx = "%s\\%s_%s.avhdx" % (cur.rsplit("\\", 1)[0], vm["Name"], str(uuid.uuid4()).upper())
                estate.files[avhdx.lower()] = {"path": avhdx, "parent": cur}
                vm["HardDrives"][0] = avhdx
                vm.setdefault("avhdx", []).append(avhdx)
                s = {"Name": sname, "Id": str(uuid.uuid4()), "Parent": parent, "disk": cur,
                     "CreationTime": datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
                     "state": {"State": vm["State"], "ProcessorCount": vm["ProcessorCount"],
                               "MemoryStartup": vm["MemoryStartup"]}}
                snaps.append(s)
                vm["current_snapshot"] = sname
            elif op == "restore":
                s = next((s for s in snaps if s["Name"] == sname), None)
                if not s:
                    raise PsError("the VM has no checkpoint named %s" % sname, "ObjectNotFound",
                                  "PolyvisorSnapshotNotFound", "Stop-Pv")
                # Standard checkpoints carry the saved state of a running VM: it comes back Saved.
                vm["State"] = "Saved" if s["state"]["State"] == "Running" else "Off"
                vm["ProcessorCount"] = s["state"]["ProcessorCount"]
                vm["MemoryStartup"] = s["state"]["MemoryStartup"]
                vm["current_snapshot"] = sname
                avhdx = "%s\\%s_%s.avhdx" % (s["disk"].rsplit("\\", 1)[0], vm["Name"], str(uuid.uuid4()).upper())
                old = vm["HardDrives"][0]
                if old in vm.get("avhdx", []) and not any(x["disk"] == old for x in snaps):
                    estate.files.pop(old.lower(), None)
                    vm["avhdx"].remove(old)
                estate.files[avhdx.lower()] = {"path": avhdx, "parent": s["disk"]}
                vm["HardDrives"][0] = avhdx
                vm.setdefault("avhdx", []).append(avhdx)
                estate.refresh_ips(vm)
            elif op == "remove":
                for s in snaps:
                    if s["Parent"] == sname:
                        s["Parent"] = next((x["Parent"] for x in snaps if x["Name"] == sname), None)
                vm["snapshots"] = snaps = [s for s in snaps if s["Name"] != sname]
                if vm.get("current_snapshot") == sname:
                    vm["current_snapshot"] = None
                if not snaps:
                    merge_checkpoints(estate, vm)
            elif op != "list":
                raise PsError("unknown checkpoint operation", "InvalidArgument", "PolyvisorBadAction", "Stop-Pv")
            return out([snap_view(s) for s in vm["snapshots"]])
        if name == "clone":
            src = estate.get(pv["source"])
            if estate.by_name(pv["name"]):
                raise PsError("a virtual machine named %s already exists" % pv["name"], "ResourceExists",
                              "PolyvisorVmExists", "Stop-Pv")
            if not src["HardDrives"]:
                raise PsError("the source virtual machine has no disk", "InvalidData", "PolyvisorNoDisk", "Stop-Pv")
            target = pv["vhd_path"].rstrip("\\") + "\\" + pv["name"] + ".vhdx"
            if target.lower() in estate.files:
                raise PsError("the disk %s already exists" % target, "ResourceExists", "PolyvisorDiskExists", "Stop-Pv")
            parent = src["HardDrives"][0]
            if pv.get("snapshot"):
                snap = next((x for x in src["snapshots"] if x["Name"] == pv["snapshot"]), None)
                if not snap:
                    raise PsError("the VM has no checkpoint named %s" % pv["snapshot"], "ObjectNotFound",
                                  "PolyvisorSnapshotNotFound", "Stop-Pv")
                parent = snap["disk"]
            estate.files[target.lower()] = {"path": target, "parent": parent if pv["linked"] else None}
            if pv.get("switch") and pv["switch"] != SWITCH:
                del estate.files[target.lower()]
                raise PsError("Hyper-V was unable to find a virtual switch with name \"%s\"." % pv["switch"],
                              "InvalidArgument", "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.NewVM", "New-VM")
            vm = estate.add_vm(pv["name"], "Off", disk=target, cpus=int(pv["cpus"]), mem_mb=int(pv["memory_mb"]),
                               switch=pv.get("switch"), gen=src["Generation"], path=pv["vm_path"])
            vm["Notes"] = pv["notes"]
            nics = pv.get("nics") or []
            if nics:
                vm["NetworkAdapters"] = []
                for i, nic in enumerate(nics):
                    vm["NetworkAdapters"].append({"Name": "NIC%d" % i, "MacAddress": (nic.get("mac") or estate.next_mac()).upper(),
                                                  "SwitchName": pv["switch"], "IPAddresses": []})
            if pv.get("start"):
                vm["State"] = "Running"
            estate.refresh_ips(vm)
            return out(estate.view(vm))
        if name == "delete":
            root = pv["vhd_path"].rstrip("\\").lower() + "\\"
            for f in pv.get("files") or []:
                if not f.lower().startswith(root) or ".." in f.split("\\"):
                    raise PsError("refusing to remove %s outside vhd_path" % f, "PermissionDenied",
                                  "PolyvisorOutsideVhdPath", "Stop-Pv")
            vm = estate.vms.get(str(pv["id"]).lower())
            if vm:
                vm["snapshots"] = []
                merge_checkpoints(estate, vm)
                del estate.vms[vm["Id"]]
            removed = []
            for f in pv.get("files") or []:
                if f.lower() in estate.files:
                    if any(x["parent"] and x["parent"].lower() == f.lower() for x in estate.files.values()):
                        raise PsError("The process cannot access the file '%s' because it is being used by another "
                                      "process." % f, "WriteError", "RemoveFileSystemItemIOError,Microsoft.PowerShell.Commands.RemoveItemCommand",
                                      "Remove-Item")
                    del estate.files[f.lower()]
                    removed.append(f)
            return out({"Removed": removed})
    raise PsError("unknown script", "NotImplemented", "PolyvisorStandinUnknownScript", "powershell")


def clixml_error(e):
    """stderr of powershell.exe for a terminating error record (CLIXML, `_x000D__x000A_` line ends)."""
    lines = [
        "%s : %s" % (e.command, e.message),
        "At line:1 char:1",
        "+ %s" % e.command,
        "+ " + "~" * len(e.command),
        "    + CategoryInfo          : %s: (:) [%s], %s" % (e.category, e.command,
                                                            "WriteErrorException" if e.command in ("Stop-Pv", "Get-PvVm") else "VirtualizationException"),
        "    + FullyQualifiedErrorId : %s" % (e.error_id if "," in e.error_id else e.error_id + "," + e.command),
        " ",
    ]
    body = "".join('<S S="Error">%s_x000D__x000A_</S>' % escape(l) for l in lines)
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">%s</Objs>'
            % body)


class Scripts:
    def __init__(self, directory):
        self.common = open(os.path.join(directory, "common.ps1"), encoding="utf-8").read()
        self.bodies = {}
        for f in sorted(os.listdir(directory)):
            if f.endswith(".ps1") and f != "common.ps1":
                self.bodies[open(os.path.join(directory, f), encoding="utf-8").read()] = f[:-4]

    def match(self, text):
        """(script name, decoded $pv) for exactly one of the fixed scripts, else None."""
        m = PRELUDE_RE.match(text)
        if not m:
            return None
        rest = text[m.end():]
        if not rest.startswith(self.common):
            return None
        name = self.bodies.get(rest[len(self.common):])
        if not name:
            return None
        return name, json.loads(base64.b64decode(m.group(1)).decode("utf-8"))


# ---------------------------------------------------------------- commands


class Command:
    def __init__(self, stdout=b"", stderr=b"", code=0, hang=False):
        self.stdout, self.stderr, self.code, self.hang = stdout, stderr, code, hang
        self.delivered = False


def run_command(server, user, command, args):
    argv = (command + " " + " ".join(args)).split()
    if not argv:
        return Command(stderr=b"empty command\r\n", code=1)
    if user.lower().split("\\")[-1] == "slowpoke":
        return Command(hang=True)
    prog = argv[0].lower()
    if prog.endswith(".exe"):
        prog = prog[:-4]
    if prog == "powershell":
        enc = None
        for i, a in enumerate(argv[1:-1], start=1):
            if a.lower() in ("-encodedcommand", "-enc", "-e"):
                enc = argv[i + 1]
        if enc is None:
            return Command(stderr=clixml_error(PsError("the stand-in runs only -EncodedCommand scripts", "InvalidArgument",
                                                       "PolyvisorStandinNoScript", "powershell")).encode(), code=1)
        text = base64.b64decode(enc).decode("utf-16-le")
        found = server.scripts.match(text)
        if not found:
            return Command(stderr=clixml_error(PsError("the stand-in runs only polyvisor's fixed scripts", "NotImplemented",
                                                       "PolyvisorStandinUnknownScript", "powershell")).encode(), code=1)
        name, pv = found
        server.count("script:" + name)
        try:
            return Command(stdout=(run_script(server.estate, name, pv) + "\r\n").encode())
        except PsError as e:
            return Command(stderr=clixml_error(e).encode(), code=1)
    if prog == "hostname":
        return Command(stdout=(HOSTNAME + "\r\n").encode())
    if prog == "echo":
        return Command(stdout=(" ".join(argv[1:]) + "\r\n").encode())
    if prog == "ipconfig":
        return Command(stdout=b"\r\nWindows IP Configuration\r\n\r\n")
    if prog == "cmd" and len(argv) == 5 and argv[1].lower() == "/c" and argv[2].lower() == "dir" and argv[3] == "/b":
        d = argv[4].rstrip("\\").lower() + "\\"
        with LOCK:
            names = sorted(f["path"].rsplit("\\", 1)[-1] for k, f in server.estate.files.items()
                           if k.startswith(d) and "\\" not in k[len(d):])
        if not names:
            return Command(stderr=b"File Not Found\r\n", code=1)
        return Command(stdout="".join(n + "\r\n" for n in names).encode())
    if prog == "cmd" and len(argv) >= 4 and argv[1].lower() == "/c" and argv[2].lower() == "exit":
        try:
            return Command(code=int(argv[3]))
        except ValueError:
            pass
    return Command(stderr=("'%s' is not recognized as an internal or external command,\r\n"
                           "operable program or batch file.\r\n" % argv[0]).encode(), code=1)


# ---------------------------------------------------------------- WS-Management


def envelope(action, relates_to, body):
    return ('<s:Envelope xml:lang="en-US" xmlns:s="%(s)s" xmlns:a="%(a)s" xmlns:x="%(x)s" xmlns:w="%(w)s" '
            'xmlns:rsp="%(rsp)s" xmlns:p="%(p)s"><s:Header><a:Action>%(action)s</a:Action>'
            '<a:MessageID>uuid:%(mid)s</a:MessageID>'
            '<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>'
            '<a:RelatesTo>%(rel)s</a:RelatesTo></s:Header><s:Body>%(body)s</s:Body></s:Envelope>'
            % dict(NS, action=action, mid=str(uuid.uuid4()).upper(), rel=escape(relates_to or ""), body=body))


def fault(relates_to, subcode, code, message, machine):
    body = ('<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:%s</s:Value></s:Subcode></s:Code>'
            '<s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason><s:Detail>'
            '<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="%s" Machine="%s">'
            '<f:Message>%s</f:Message></f:WSManFault></s:Detail></s:Fault>'
            % (subcode, escape(message), code, escape(machine), escape(message)))
    return envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


class WsFault(Exception):
    def __init__(self, subcode, code, message):
        super().__init__(message)
        self.subcode, self.code, self.message = subcode, code, message


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, opts):
        super().__init__(addr, handler)
        self.opts = opts
        self.estate = Estate()
        self.scripts = Scripts(opts.scripts)
        self.shells = {}  # id -> {"owner", "commands": {cid: Command}}
        self.counts = {}

    def count(self, what):
        with LOCK:
            self.counts[what] = self.counts.get(what, 0) + 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300
    disable_nagle_algorithm = True
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def setup(self):
        super().setup()
        self.user = None  # authenticated account of this connection
        self.ctx = None

    def log_message(self, fmt, *args):
        if self.server.opts.verbose:
            log("http", self.address_string(), fmt % args)

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def challenge(self, token=None):
        hdrs = [("WWW-Authenticate", "Negotiate" + (" " + base64.b64encode(token).decode() if token else ""))]
        if token is None:
            if self.server.opts.basic:
                hdrs.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self.reply(401, b"", hdrs)

    def authenticate(self):
        """True when this request may proceed (self.user set); otherwise a 401 was sent."""
        auth = self.headers.get("Authorization", "")
        scheme, _, data = auth.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.server.opts.basic:
            try:
                user, _, pw = base64.b64decode(data).decode("utf-8").partition(":")
            except Exception:
                user, pw = "", None
            if pw is not None and user.lower().split("\\")[-1] in self.server.opts.users and \
                    pw == self.server.opts.password:
                self.user = user
                return True
            self.server.count("auth-failed")
            self.challenge()
            return False
        if scheme in ("negotiate", "ntlm") and data:
            token = base64.b64decode(data)
            if token[:8] == b"NTLMSSP\0" and token[8:12] == b"\x01\x00\x00\x00":
                # With --require-channel-binding the acceptor refuses an AUTHENTICATE without
                # the TLS channel binding of this certificate, or with another one (Windows'
                # Extended Protection, CbtHardeningLevel=Strict).
                self.ctx = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm,
                                         channel_bindings=self.server.opts.cbt)
            if self.ctx is None:
                self.challenge()
                return False
            try:
                out = self.ctx.step(token)
            except Exception as e:  # a wrong password, a malformed message
                log("ntlm failed:", type(e).__name__)
                self.server.count("auth-failed")
                self.ctx = None
                self.user = None
                self.challenge()
                return False
            if not self.ctx.complete:
                self.challenge(out)
                return False
            self.user = self.ctx.client_principal or "?"
            self.ctx = None
            return True
        if self.user:
            return True
        self.challenge()
        return False

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        self.server.count("http")
        if self.path.split("?")[0].lower() != "/wsman":
            self.reply(404)
            return
        if not self.authenticate():
            return
        if not raw:
            self.reply(200)
            return
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            self.reply(400)
            return
        hdr = root.find("s:Header", NS)
        body = root.find("s:Body", NS)
        action = (hdr.findtext("a:Action", "", NS) or "").strip()
        mid = (hdr.findtext("a:MessageID", "", NS) or "").strip()
        sel = hdr.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell_id = sel.text.strip() if sel is not None and sel.text else None
        m = re.match(r"PT([0-9.]+)S", hdr.findtext("w:OperationTimeout", "PT60S", NS) or "PT60S")
        op_timeout = min(float(m.group(1)) if m else 60.0, 60.0)
        self.server.count("action:" + action.rsplit("/", 1)[-1])
        try:
            out = self.dispatch(action, mid, shell_id, body, op_timeout)
            self.record(action, raw, out)
            self.reply(200, out.encode("utf-8"))
        except WsFault as f:
            out = fault(mid, f.subcode, f.code, f.message, HOSTNAME)
            self.record(action, raw, out)
            self.reply(500, out.encode("utf-8"))

    def record(self, action, request, response):
        """With --record DIR: keep each exchange (request as the client sent it, our answer)
        for the comparison with recorded real exchanges (testing/hyperv/recorded_check.py)."""
        d = self.server.opts.record
        if not d:
            return
        with LOCK:
            self.server.recorded = getattr(self.server, "recorded", 0) + 1
            n = self.server.recorded
        base = os.path.join(d, "%04d-%s" % (n, action.rsplit("/", 1)[-1]))
        with open(base + "-request.xml", "wb") as f:
            f.write(request)
        with open(base + "-response.xml", "w", encoding="utf-8") as f:
            f.write(response)

    def shell(self, shell_id):
        s = self.server.shells.get(shell_id or "")
        if not s or s["owner"].lower() != (self.user or "").lower():
            raise WsFault("InvalidSelectors", "2150858843",
                          "The request for the Windows Remote Shell with ShellId %s failed because the shell was not "
                          "found on the server. Possible causes are: the specified ShellId is incorrect or the shell "
                          "no longer exists on the server. Provide the correct ShellId or create a new shell and "
                          "retry the operation." % (shell_id or ""))
        return s

    def dispatch(self, action, mid, shell_id, body, op_timeout):
        srv = self.server
        if action == A_CREATE:
            if body.find("rsp:Shell", NS) is None:
                raise WsFault("SchemaValidationError", "2150858817", "The SOAP XML in the message does not match the "
                              "corresponding XML schema definition. Change the XML and retry.")
            sid = str(uuid.uuid4()).upper()
            with LOCK:
                srv.shells[sid] = {"owner": self.user, "commands": {}}
            addr = "https://%s:%d/wsman" % srv.server_address[:2]
            res = ('<x:ResourceCreated><a:Address>%s</a:Address><a:ReferenceParameters>'
                   '<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>'
                   '<w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                   '</x:ResourceCreated><rsp:Shell><rsp:ShellId>%s</rsp:ShellId>'
                   '<rsp:ResourceUri>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</rsp:ResourceUri>'
                   '<rsp:Owner>%s</rsp:Owner><rsp:ClientIP>%s</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>'
                   '<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>'
                   '<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>'
                   '</rsp:Shell>' % (addr, sid, sid, escape(self.user or ""), self.client_address[0]))
            return envelope(A_CREATE + "Response", mid, res)
        if action == A_DELETE:
            self.shell(shell_id)
            with LOCK:
                srv.shells.pop(shell_id, None)
            return envelope(A_DELETE + "Response", mid, "")
        if action == A_COMMAND:
            s = self.shell(shell_id)
            cl = body.find("rsp:CommandLine", NS)
            if cl is None:
                raise WsFault("SchemaValidationError", "2150858817", "no CommandLine")
            command = (cl.findtext("rsp:Command", "", NS) or "").strip()
            args = [a.text or "" for a in cl.findall("rsp:Arguments", NS)]
            cid = str(uuid.uuid4()).upper()
            cmd = run_command(srv, self.user or "", command, args)
            with LOCK:
                s["commands"][cid] = cmd
            return envelope(SHELL_URI + "/CommandResponse", mid,
                            "<rsp:CommandResponse><rsp:CommandId>%s</rsp:CommandId></rsp:CommandResponse>" % cid)
        if action == A_RECEIVE:
            s = self.shell(shell_id)
            ds = body.find("rsp:Receive/rsp:DesiredStream", NS)
            cid = ds.get("CommandId") if ds is not None else None
            cmd = s["commands"].get(cid or "")
            if cmd is None:
                raise WsFault("InvalidParameter", "2150858882", "The parameter is incorrect: unknown CommandId.")
            if cmd.hang:
                time.sleep(max(0.0, op_timeout - 0.5))
                raise WsFault("TimedOut", "2150858793", "The WS-Management service cannot complete the operation "
                              "within the time specified in OperationTimeout.")
            streams = ""
            if not cmd.delivered:
                for name, data in (("stdout", cmd.stdout), ("stderr", cmd.stderr)):
                    if data:
                        streams += '<rsp:Stream Name="%s" CommandId="%s">%s</rsp:Stream>' % (
                            name, cid, base64.b64encode(data).decode())
                cmd.delivered = True
            streams += ('<rsp:Stream Name="stdout" CommandId="%s" End="true"></rsp:Stream>'
                        '<rsp:Stream Name="stderr" CommandId="%s" End="true"></rsp:Stream>' % (cid, cid))
            state = ('<rsp:CommandState CommandId="%s" State="%s"><rsp:ExitCode>%d</rsp:ExitCode></rsp:CommandState>'
                     % (cid, DONE, cmd.code))
            return envelope(SHELL_URI + "/ReceiveResponse", mid,
                            "<rsp:ReceiveResponse>%s%s</rsp:ReceiveResponse>" % (streams, state))
        if action == A_SIGNAL:
            s = self.shell(shell_id)
            sig = body.find("rsp:Signal", NS)
            cid = sig.get("CommandId") if sig is not None else None
            with LOCK:
                if cid not in s["commands"]:
                    raise WsFault("InvalidParameter", "2150858882", "The parameter is incorrect: unknown CommandId.")
                s["commands"].pop(cid, None)
            return envelope(SHELL_URI + "/SignalResponse", mid, "<rsp:SignalResponse/>")
        raise WsFault("ActionNotSupported", "2150858754", "The action is not supported by the service: %s" % action)


def make_cert(certdir, host):
    """A private CA and a server certificate it signs (webpki refuses a CA as end entity)."""
    os.makedirs(certdir, exist_ok=True)
    ca, ca_key = os.path.join(certdir, "ca.crt"), os.path.join(certdir, "ca.key")
    crt, key = os.path.join(certdir, "winrm.crt"), os.path.join(certdir, "winrm.key")
    if not all(os.path.exists(p) for p in (ca, ca_key, crt, key)):
        def ssl_(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-keyout", ca_key, "-out", ca,
             "-subj", "/CN=polyvisor Hyper-V stand-in CA")
        csr = os.path.join(certdir, "winrm.csr")
        ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=%s" % host)
        ext = os.path.join(certdir, "winrm.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:localhost\n" % host)
        ssl_("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "3650",
             "-out", crt, "-extfile", ext)
    der = ssl.PEM_cert_to_DER_cert(open(crt).read())
    fp = ":".join("%02X" % b for b in hashlib.sha256(der).digest())
    return ca, crt, key, fp, der


def channel_bindings(der):
    """RFC 5929 tls-server-end-point for this certificate, as requests_ntlm computes it: the
    certificate hashed with its signature's hash (SHA-256 for MD5/SHA-1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    alg = x509.load_der_x509_certificate(der).signature_hash_algorithm
    if alg is None or isinstance(alg, (hashes.MD5, hashes.SHA1)):
        alg = hashes.SHA256()
    h = hashes.Hash(alg)
    h.update(der)
    return GssChannelBindings(application_data=b"tls-server-end-point:" + h.finalize())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.9.6")
    ap.add_argument("--port", type=int, default=5986)
    ap.add_argument("--certdir", required=True)
    ap.add_argument("--username", default="polyvisor")
    ap.add_argument("--password", required=True)
    ap.add_argument("--basic", action="store_true", help="also accept HTTP Basic (over HTTPS)")
    ap.add_argument("--require-channel-binding", action="store_true",
                    help="NTLM must carry this certificate's TLS channel binding (Extended Protection, Strict)")
    ap.add_argument("--scripts", default=SCRIPTS_DIR)
    ap.add_argument("--record", help="write every exchange to this directory (request + answer)")
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    opts.users = [opts.username.lower(), "slowpoke"]
    ca, crt, key, fp, der = make_cert(opts.certdir, opts.host)
    opts.cbt = channel_bindings(der) if opts.require_channel_binding else None
    users = os.path.join(opts.certdir, "ntlm-users")
    fd = os.open(users, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for u in opts.users:
            f.write(":%s:%s\n" % (u, opts.password))
    os.environ["NTLM_USER_FILE"] = users
    srv = Server((opts.host, opts.port), Handler, opts)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    opts.port = srv.server_address[1]
    e = srv.estate
    print(json.dumps({"listening": "https://%s:%d/wsman" % (opts.host, opts.port), "host": opts.host,
                      "port": opts.port, "ca_file": ca, "fingerprint": fp, "source_guest": e.base,
                      "template_id": e.tpl, "foreign_guest": e.web, "vhd_path": VHD_PATH, "vm_path": VM_PATH,
                      "switch": SWITCH}), flush=True)
    log("listening on https://%s:%d/wsman" % (opts.host, opts.port))
    srv.serve_forever()


if __name__ == "__main__":
    main()
