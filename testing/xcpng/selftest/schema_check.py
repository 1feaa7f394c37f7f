#!/usr/bin/env python3
"""Checks a transcript of XAPI calls against XAPI's own API description (xenapi.json).

A transcript is a JSON list of {"method", "args" (without the session), "result"} or
{"method", "args", "error": [CODE, params...]} written by a client scenario (the official
Python binding XenAPI.py: scenario_py.py; npm xen-api: scenario_node.mjs).

Rules (each violation is reported; any violation fails):
- the message exists in xenapi.json (`Async.` twins only for non-implicit messages);
- the number of arguments matches the message's parameters (the session counts as one);
- every returned value has the message's result type; every record has exactly the class's
  fields, each of its field type (enums within their values, refs `OpaqueRef:`);
- an error code is one the message declares or one every call may raise.

`--self-test` proves the checker catches an unknown message, a wrong arity and a missing field.
"""
import gzip
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GENERIC_ERRORS = {"SESSION_INVALID", "HANDLE_INVALID", "UUID_INVALID", "MESSAGE_METHOD_UNKNOWN",
                  "MESSAGE_PARAMETER_COUNT_MISMATCH", "SESSION_AUTHENTICATION_FAILED", "HOST_IS_SLAVE",
                  "PERMISSION_DENIED", "RBAC_PERMISSION_DENIED", "INTERNAL_ERROR", "MAP_DUPLICATE_KEY"}


class Schema:
    def __init__(self, path=None):
        path = path or os.path.join(HERE, "..", "xenapi.json.gz")
        with gzip.open(path, "rt") as f:
            self.classes = {c["name"]: c for c in json.load(f)}
        self.enums = {}
        for c in self.classes.values():
            for e in c.get("enums", []):
                self.enums[e["name"]] = {v["name"] for v in e["values"]}
        self.lower = {k.lower(): k for k in self.classes}

    def message(self, method):
        parts = method.split(".")
        is_async = parts[0] == "Async"
        if is_async:
            parts = parts[1:]
        if len(parts) != 2 or parts[0] not in self.classes:
            return None, is_async
        m = next((m for m in self.classes[parts[0]]["messages"] if m["name"] == parts[1]), None)
        if m is not None and is_async and m.get("implicit"):
            return None, is_async
        return m, is_async

    def check_value(self, t, v, where, errs):
        t = t.strip()
        if t == "void":
            if v not in ("", None):
                errs.append(f"{where}: void result is {v!r}")
            return
        m = re.fullmatch(r"\((.+) -> (.+)\) map", t)
        if m:
            if not isinstance(v, dict):
                return errs.append(f"{where}: expected a map ({t}), saw {type(v).__name__}")
            for k, x in v.items():
                self.check_value(m.group(1), k, f"{where} key", errs)
                self.check_value(m.group(2), x, f"{where}[{k}]", errs)
            return
        if t.endswith(" set"):
            if not isinstance(v, list):
                return errs.append(f"{where}: expected a set ({t}), saw {type(v).__name__}")
            for i, x in enumerate(v):
                self.check_value(t[:-4], x, f"{where}[{i}]", errs)
            return
        if t.endswith(" option"):
            return self.check_value(t[:-7], v, where, errs) if v not in (None, "") else None
        if t.endswith(" record"):
            return self.check_record(t[:-7], v, where, errs)
        if t.endswith(" ref"):
            if not (isinstance(v, str) and v.startswith("OpaqueRef:")):
                errs.append(f"{where}: expected a {t}, saw {v!r}")
            return
        if t.startswith("enum "):
            name = t[5:]
            if name not in self.enums or v not in self.enums[name]:
                errs.append(f"{where}: {v!r} is not a value of enum {name}")
            return
        if t == "string" or t == "datetime":
            if not isinstance(v, str) and not (t == "datetime" and hasattr(v, "timetuple")):
                errs.append(f"{where}: expected {t}, saw {type(v).__name__}")
            return
        if t == "bool":
            if not isinstance(v, bool):
                errs.append(f"{where}: expected bool, saw {v!r}")
            return
        if t == "int":
            ok = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and re.fullmatch(r"-?\d+", v))
            if not ok:
                errs.append(f"{where}: expected int, saw {v!r}")
            return
        if t == "float":
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                errs.append(f"{where}: expected float, saw {v!r}")
            return
        # Anything else (blob, sr_stat...) only needs to be present.

    def check_record(self, cls, v, where, errs):
        cls = self.lower.get(cls.lower(), cls)
        if cls not in self.classes:
            return errs.append(f"{where}: unknown class {cls}")
        if not isinstance(v, dict):
            return errs.append(f"{where}: expected a {cls} record, saw {type(v).__name__}")
        fields = {f["name"]: f for f in self.classes[cls]["fields"]}
        for name in fields:
            if name not in v:
                errs.append(f"{where}: {cls} record lacks field {name}")
        for name in v:
            if name not in fields:
                errs.append(f"{where}: {cls} record has unknown field {name}")
        for name, f in fields.items():
            if name in v:
                self.check_value(f["type"], v[name], f"{where}.{name}", errs)

    def check_entry(self, i, e, errs):
        method, args = e["method"], e.get("args", [])
        where = f"#{i} {method}"
        if method == "system.listMethods":
            return
        m, is_async = self.message(method)
        if m is None:
            return errs.append(f"{where}: not a message in xenapi.json")
        want = len(m["params"]) - (0 if method == "session.login_with_password" else 1)
        if method == "session.login_with_password":
            if not 2 <= len(args) <= want:
                errs.append(f"{where}: {len(args)} arguments, the message takes 2..{want}")
        elif len(args) != want:
            errs.append(f"{where}: {len(args)} arguments, the message takes {want} after the session")
        if "error" in e:
            code = e["error"][0] if e["error"] else ""
            declared = {x["name"] for x in m.get("errors", [])}
            if code not in declared and code not in GENERIC_ERRORS:
                errs.append(f"{where}: error {code} is not declared for this message")
            return
        result = e.get("result")
        if is_async:
            self.check_value("task ref", result, where, errs)
        elif m.get("result"):
            rt = m["result"][0].replace("<class>", method.split(".")[-2])
            self.check_value(rt, result, f"{where} result", errs)


def check(transcript, schema=None):
    schema = schema or Schema()
    errs = []
    for i, e in enumerate(transcript):
        schema.check_entry(i, e, errs)
    return errs


def self_test():
    s = Schema()
    rec = {f["name"]: None for f in s.classes["task"]["fields"]}
    good = [{"method": "VM.get_by_uuid", "args": ["x"], "result": "OpaqueRef:1"}]
    assert check(good, s) == [], check(good, s)
    bad_msg = [{"method": "VM.get_all_records_where", "args": ["true"], "result": {}}]
    assert any("not a message" in x for x in check(bad_msg, s))
    bad_arity = [{"method": "VM.start", "args": ["OpaqueRef:1"], "result": ""}]
    assert any("arguments" in x for x in check(bad_arity, s))
    del rec["progress"]
    missing = [{"method": "task.get_record", "args": ["OpaqueRef:1"], "result": rec}]
    assert any("lacks field progress" in x for x in check(missing, s))
    bad_enum = [{"method": "VM.get_power_state", "args": ["OpaqueRef:1"], "result": "Sleeping"}]
    assert any("enum" in x for x in check(bad_enum, s))
    undeclared = [{"method": "VM.clean_shutdown", "args": ["OpaqueRef:1"], "error": ["SR_FULL"]}]
    assert any("not declared" in x for x in check(undeclared, s))
    print("schema_check self-test: unknown message, wrong arity, missing field, bad enum, undeclared error caught")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    total = 0
    failed = False
    for path in sys.argv[1:]:
        t = json.load(open(path))
        total += len(t)
        errs = check(t)
        for x in errs:
            print(f"{os.path.basename(path)}: {x}")
        failed |= bool(errs)
        if len(t) < 20:
            print(f"{path}: only {len(t)} calls recorded: the scenario did not run through")
            failed = True
    print(f"schema_check: {total} calls checked against xenapi.json, {'FAILED' if failed else 'all conform'}")
    sys.exit(1 if failed else 0)
