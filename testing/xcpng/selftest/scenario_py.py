#!/usr/bin/env python3
"""The self-trust scenario through the official Python binding (PyPI `XenAPI`, XML-RPC).

Usage: scenario_py.py URL PASSWORD TRANSCRIPT.json. Every call and its result (or error) is
recorded for schema_check.py. Fails on any unexpected answer.
"""
import json
import sys
import time

import XenAPI

url, password, out = sys.argv[1], sys.argv[2], sys.argv[3]
transcript = []
session = XenAPI.Session(url, ignore_ssl=True)


def call(method, *args, expect_error=None):
    target = session.xenapi
    for part in method.split("."):
        target = getattr(target, part)
    try:
        res = target(*args)
    except XenAPI.Failure as f:
        transcript.append({"method": method, "args": list(args), "error": f.details})
        if expect_error and f.details[0] == expect_error:
            return None
        raise
    transcript.append({"method": method, "args": list(args), "result": res})
    if expect_error:
        raise AssertionError(f"{method} should have failed with {expect_error}")
    return res


def wait(task):
    for _ in range(200):
        rec = call("task.get_record", task)
        if rec["status"] != "pending":
            call("task.destroy", task)
            assert rec["status"] == "success", rec["error_info"]
            return rec["result"]
        time.sleep(0.1)
    raise AssertionError("task did not finish")


def ref_of(result):
    return result.split("<value>")[-1].split("</value>")[0]


# XenAPI.py's login goes through session.login_with_password; record it like any call.
session.xenapi.login_with_password("root", password, "2.21", "selftest-py")
transcript.append({"method": "session.login_with_password", "args": ["root", "***", "2.21", "selftest-py"],
                   "result": session._session})
pools = call("pool.get_all_records")
master = list(pools.values())[0]["master"]
call("host.get_record", master)
vms = call("VM.get_all_records")
base = next(r for r, v in vms.items() if v["name_label"] == "base-vm")
base_uuid = call("VM.get_uuid", base)
assert call("VM.get_by_uuid", base_uuid) == base
call("VM.get_record", base)
clone = ref_of(wait(call("Async.VM.clone", base, "selftest-clone")))
rec = call("VM.get_record", clone)
assert rec["name_label"] == "selftest-clone" and not rec["is_a_template"]
call("VM.clean_shutdown", clone, expect_error="VM_BAD_POWER_STATE")
call("VM.set_VCPUs_max", clone, "2")  # XML-RPC: XAPI ints travel as strings
call("VM.set_VCPUs_at_startup", clone, "2")
call("VM.set_memory_limits", clone, "536870912", "2147483648", "2147483648", "2147483648")
call("VM.add_to_other_config", clone, "polyvisor_key", "selftest")
wait(call("Async.VM.start", clone, False, False))
rec = call("VM.get_record", clone)
assert rec["power_state"] == "Running"
gm = call("VM_guest_metrics.get_record", rec["guest_metrics"])
assert gm["networks"], gm
for vif in rec["VIFs"]:
    call("VIF.get_record", vif)
for con in rec["consoles"]:
    assert call("console.get_record", con)["protocol"] == "rfb"
snap = ref_of(wait(call("Async.VM.snapshot", clone, "s1", [])))
srec = call("VM.get_record", snap)
assert srec["is_a_snapshot"] and srec["snapshot_of"] == clone
wait(call("Async.VM.suspend", clone))
wait(call("Async.VM.resume", clone, False, False))
wait(call("Async.VM.hard_shutdown", clone))
wait(call("Async.VM.revert", snap))
call("VM.set_is_a_template", clone, True)
call("VM.set_is_a_template", clone, False)
for r in (snap, clone):
    for vbd in call("VM.get_record", r)["VBDs"]:
        b = call("VBD.get_record", vbd)
        if b["type"] == "Disk":
            call("VDI.get_record", b["VDI"])
            call("VDI.destroy", b["VDI"])
    call("VM.destroy", r)
call("VM.get_record", clone, expect_error="HANDLE_INVALID")
call("session.logout")
json.dump(transcript, open(out, "w"), default=str)
print(f"scenario_py: {len(transcript)} calls")
