#!/usr/bin/env python3
"""Self-trust test of the Hyper-V WinRM stand-in: the WinRM clients real tools use against
Windows hosts (pywinrm — what CloudStack's built-in Hyper-V extension uses — and pypsrp)
run commands through it over HTTPS with NTLM (and Basic): shell create / command / receive /
signal / delete, exit codes, CLIXML error records, SOAP faults, refused credentials, and
one of polyvisor's own fixed scripts run through pywinrm's `run_ps`.

Run: python3 testing/hyperv/test_standin.py (starts a private stand-in on a free port).
Prints one line per check and a final "N passed, M failed"; exit status 1 on any failure.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import traceback

import winrm
import winrm.exceptions
from pypsrp.client import Client
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.shell import Process, SignalCode, WinRS
from pypsrp.wsman import WSMan

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "..", "crates", "hyperv", "scripts")
PASSWORD = "standin-test-s3cret"
PRELUDE = ("$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n"
           "$pv = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('%s')) | ConvertFrom-Json\n")


def render(name, data):
    """The text polyvisor's driver sends for script `name` (crates/hyperv/src/scripts.rs)."""
    common = open(os.path.join(SCRIPTS, "common.ps1"), encoding="utf-8").read()
    body = open(os.path.join(SCRIPTS, name + ".ps1"), encoding="utf-8").read()
    return PRELUDE % base64.b64encode(json.dumps(data).encode()).decode() + common + body


def start(*extra):
    d = tempfile.mkdtemp(prefix="hyperv-selftest-")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "standin.py"), "--host", "127.0.0.1", "--port", "0",
                          "--certdir", os.path.join(d, "pki"), "--password", PASSWORD, "--basic", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = json.loads(p.stdout.readline())
    return p, ready


def main():
    proc, r = start()
    url = "https://%s:%d/wsman" % (r["host"], r["port"])
    ca = r["ca_file"]
    results = []

    def check(name, fn):
        try:
            fn()
            results.append((name, True))
            print("PASS", name, flush=True)
        except Exception:
            results.append((name, False))
            print("FAIL", name, flush=True)
            traceback.print_exc()

    def session(transport="ntlm", password=PASSWORD, at=None, send_cbt=True):
        a = at or r
        return winrm.Session("https://%s:%d/wsman" % (a["host"], a["port"]), auth=("polyvisor", password),
                             transport=transport, server_cert_validation="validate", ca_trust_path=a["ca_file"],
                             operation_timeout_sec=5, read_timeout_sec=10, send_cbt=send_cbt)

    def pywinrm_run_cmd():
        s = session()
        out = s.run_cmd("hostname")
        assert out.status_code == 0 and out.std_out == b"HV-STANDIN-01\r\n", out.__dict__
        assert s.run_cmd("cmd", ["/c", "exit", "3"]).status_code == 3
        bad = s.run_cmd("nosuchcommand")
        assert bad.status_code == 1 and b"is not recognized" in bad.std_err

    def pywinrm_protocol_steps():
        p = session().protocol
        shell = p.open_shell()
        cmd = p.run_command(shell, "echo", ["hello", "winrs"])
        out, err, code = p.get_command_output(shell, cmd)
        assert (out, err, code) == (b"hello winrs\r\n", b"", 0), (out, err, code)
        p.cleanup_command(shell, cmd)  # Signal terminate (pywinrm checks RelatesTo)
        p.close_shell(shell)  # Delete
        try:
            p.run_command(shell, "hostname")
        except winrm.exceptions.WinRMError as e:  # a SOAP fault: the shell is gone
            assert "2150858843" in str(e) or "InvalidSelectors" in str(e) or "shell was not found" in str(e), str(e)
        else:
            raise AssertionError("a deleted shell still ran a command")

    def pywinrm_run_ps_fixed_script():
        s = session()
        out = s.run_ps(render("list", {}))
        assert out.status_code == 0, out.std_err
        vms = json.loads(out.std_out)
        assert sorted(v["Name"] for v in vms) == ["base-vm", "tpl-ubuntu", "web-01"], vms
        got = s.run_ps(render("get", {"id": r["foreign_guest"]}))
        assert json.loads(got.std_out)["State"] == "Running"
        # A failing script: CLIXML error record on stderr, which pywinrm cleans to the message.
        missing = s.run_ps(render("get", {"id": "00000000-0000-0000-0000-000000000000"}))
        assert missing.status_code == 1
        assert b"unable to find a virtual machine" in missing.std_err, missing.std_err
        assert b"ObjectNotFound" in missing.std_err, missing.std_err
        # Anything but polyvisor's fixed scripts is refused.
        other = s.run_ps("Get-VM | Remove-VM -Force")
        assert other.status_code == 1 and b"fixed scripts" in other.std_err, other.std_err

    def pywinrm_bad_password():
        try:
            session(password="wrong").run_cmd("hostname")
        except winrm.exceptions.InvalidCredentialsError:
            return
        raise AssertionError("a wrong password was accepted")

    def pywinrm_basic():
        out = session(transport="basic").run_cmd("hostname")
        assert out.status_code == 0 and out.std_out.strip() == b"HV-STANDIN-01"

    def pypsrp_execute_cmd():
        c = Client(r["host"], port=r["port"], username="polyvisor", password=PASSWORD, ssl=True,
                   cert_validation=ca, auth="ntlm", connection_timeout=10)
        out, err, rc = c.execute_cmd("hostname")
        assert (out.strip(), rc) == ("HV-STANDIN-01", 0), (out, err, rc)
        out, err, rc = c.execute_cmd("cmd /c exit 7")
        assert rc == 7

    def pypsrp_winrs_signal_and_fault():
        wsman = WSMan(r["host"], port=r["port"], username="polyvisor", password=PASSWORD, ssl=True,
                      cert_validation=ca, auth="ntlm", connection_timeout=10)
        with wsman:
            shell = WinRS(wsman)
            shell.open()
            p = Process(shell, "echo", ["from", "pypsrp"])
            p.invoke()
            assert (p.stdout, p.rc) == (b"from pypsrp\r\n", 0), (p.stdout, p.rc)
            p.signal(SignalCode.TERMINATE)
            shell.close()
            try:
                Process(shell, "hostname").invoke()
            except WSManFaultError as e:
                assert e.code == 2150858843, (e.code, e.reason)
            else:
                raise AssertionError("a deleted shell still ran a command")

    def pypsrp_bad_password():
        c = Client(r["host"], port=r["port"], username="polyvisor", password="wrong", ssl=True,
                   cert_validation=ca, auth="ntlm", connection_timeout=10)
        try:
            c.execute_cmd("hostname")
        except AuthenticationError:
            return
        raise AssertionError("a wrong password was accepted")

    strict, rs = start("--require-channel-binding")

    def cbt_pywinrm():
        out = session(at=rs).run_cmd("hostname")
        if out.status_code != 0 or not out.std_out.strip():
            raise AssertionError("run_cmd with channel binding: %r" % (out,))

    def cbt_pypsrp():
        c = Client(rs["host"], port=rs["port"], username="polyvisor", password=PASSWORD, ssl=True,
                   cert_validation=rs["ca_file"], auth="ntlm", connection_timeout=10)
        _, _, rc = c.execute_cmd("hostname")
        if rc != 0:
            raise AssertionError("execute_cmd with channel binding: rc %s" % rc)

    def cbt_missing_is_refused():
        try:
            session(at=rs, send_cbt=False).run_cmd("hostname")
        except winrm.exceptions.InvalidCredentialsError:
            return
        raise AssertionError("NTLM without the channel binding was accepted in Strict mode")

    try:
        check("pywinrm: NTLM with the TLS channel binding (stand-in in Strict mode)", cbt_pywinrm)
        check("pypsrp: NTLM with the TLS channel binding (stand-in in Strict mode)", cbt_pypsrp)
        check("pywinrm without the channel binding is refused in Strict mode (401)", cbt_missing_is_refused)
        check("pywinrm: run_cmd over NTLM (shell create/command/receive/signal/delete, exit codes)", pywinrm_run_cmd)
        check("pywinrm: protocol steps one by one and the fault for a deleted shell", pywinrm_protocol_steps)
        check("pywinrm: run_ps runs polyvisor's fixed scripts; CLIXML error records; other scripts refused",
              pywinrm_run_ps_fixed_script)
        check("pywinrm: a wrong NTLM password is refused (401)", pywinrm_bad_password)
        check("pywinrm: Basic over HTTPS", pywinrm_basic)
        check("pypsrp: execute_cmd over NTLM", pypsrp_execute_cmd)
        check("pypsrp: WinRS process, terminate signal, WSManFault code of a deleted shell",
              pypsrp_winrs_signal_and_fault)
        check("pypsrp: a wrong NTLM password is refused", pypsrp_bad_password)
    finally:
        for p in (proc, strict):
            p.kill()
            p.wait()
    ok = sum(1 for _, good in results if good)
    print("%d passed, %d failed" % (ok, len(results) - ok))
    sys.exit(0 if ok == len(results) else 1)


if __name__ == "__main__":
    main()
