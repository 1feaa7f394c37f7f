#!/usr/bin/env python3
"""Starts one fakepve (PyPI, AGPL; run as a separate process, never linked) for polyvisor's tests.

    python3 scripts/ci/fakepve-launcher.py --guests guests.json --host 127.0.0.7 --token 'root@pam!ci=SECRET'

Listens on a free port of the given loopback address, writes the server certificate into
--certdir, and prints ONE JSON line on stdout when ready:

    {"listening": "https://127.0.0.7:40123", "ca_file": ".../fakepve.crt", "fingerprint": "AB:CD:..."}

Then it reads JSON commands from stdin, one per line, and answers each with one JSON line
({"ok": <result>} or {"error": "<text>"}), so a test can inject faults while it runs:

    {"call": "fail", "args": ["POST", "/status/start", 500, "boom"], "kwargs": {"times": 1}}
    {"call": "revoke_tickets"}
    {"set": "time_scale", "value": 0.2}
    {"vm": 100, "set": "agent", "value": {}}
    {"requests": true}        -> {"ok": <number of requests seen>}
    {"vms": true}             -> {"ok": [{"vmid", "name", "node", "status", "template", "lock", "tags"}, ...]}
    {"sent": true}            -> {"ok": [[method, path, [parameter names (query + body)]], ...]} (no values)

It exits when stdin closes (the test process died or finished), so nothing is left running.

With --serve-forever it ignores stdin and serves until SIGTERM/SIGINT (scripts/ci/start-proxmox.sh
runs one like that, detached, on a fixed --port for the backend contract).
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


async def _command(pve, line):
    cmd = json.loads(line)
    if 'requests' in cmd:
        return len(pve.requests)
    if 'sent' in cmd:
        return pve.sent_log
    if 'vms' in cmd:
        return [{'vmid': vm.vmid, 'name': vm.name, 'node': vm.node, 'status': vm.status,
                 'template': bool(vm.template), 'lock': vm.lock, 'tags': vm.config.get('tags')} for vm in pve.vms]
    if 'vm' in cmd:
        setattr(pve.guest(int(cmd['vm'])), cmd['set'], cmd.get('value'))
        return None
    if 'set' in cmd:
        setattr(pve, cmd['set'], cmd.get('value'))
        return None
    result = getattr(pve, cmd['call'])(*cmd.get('args', []), **cmd.get('kwargs', {}))
    if asyncio.iscoroutine(result):
        result = await result
    return _jsonable(result)


def _record_sent(pve):
    """Keep (method, path, parameter names) of every request: names only, never values."""
    import urllib.parse
    pve.sent_log = []
    original = pve._record

    def record(request, body):
        names = [k for k, _ in urllib.parse.parse_qsl(request.query_string, keep_blank_values=True)]
        if body and request.content_type == 'application/x-www-form-urlencoded':
            names += [k for k, _ in urllib.parse.parse_qsl(body.decode('utf-8', 'replace'), keep_blank_values=True)]
        elif body and request.content_type == 'application/json':
            try:
                names += list(json.loads(body))
            except ValueError:
                pass
        pve.sent_log.append([request.method, request.path, names])
        return original(request, body)
    pve._record = record


async def _serve(args):
    from fakepve.certs import make_cert
    from fakepve.server import FakePve
    pve = FakePve(user=args.user, password=args.password, host=args.host, port=args.port)
    pve.time_scale = args.time_scale
    _record_sent(pve)
    with open(args.guests) as f:
        guests = json.load(f)['guests']
    for g in guests:
        if g.get('type', 'qemu') == 'lxc':
            pve.add_ct(g['vmid'], g.get('name'), node=g.get('node', 'pve1'), status=g.get('status', 'stopped'),
                       config=g.get('config', {}), template=g.get('template', False), lock=g.get('lock'),
                       ostemplate=g.get('ostemplate'))
            continue
        vm = pve.add_vm(g['vmid'], g['name'], node=g.get('node', 'pve1'), status=g.get('status', 'stopped'),
                        qmpstatus=g.get('qmpstatus'), config=g.get('config', {}),
                        template=g.get('template', False), lock=g.get('lock'))
        vm.acpi = g.get('acpi', True)
        for key in ('shutdown_secs', 'start_secs', 'stop_secs', 'start_error', 'ha_state', 'agent'):
            if key in g:
                setattr(vm, key, g[key])
    for token in args.token:
        tokenid, _, secret = token.partition('=')
        pve.apitokens[tokenid] = secret
    os.makedirs(args.certdir, exist_ok=True)
    certfile, keyfile, der = make_cert(args.certdir, hosts=(args.host,))
    await pve.start(certfile, keyfile)
    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))
    print(json.dumps({'listening': pve.url, 'ca_file': certfile, 'fingerprint': fingerprint}), flush=True)

    loop = asyncio.get_running_loop()
    if args.serve_forever:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await pve.stop()
        return
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if not line.strip():
            continue
        try:
            answer = {'ok': await _command(pve, line)}
        except Exception as exc:  # noqa: BLE001 - report to the test, keep serving
            answer = {'error': '{0}: {1}'.format(type(exc).__name__, exc)}
        print(json.dumps(answer), flush=True)
    await pve.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--guests', required=True)
    p.add_argument('--host', default='127.0.0.2')
    p.add_argument('--user', default='root@pam')
    p.add_argument('--password', default='secret')
    p.add_argument('--token', action='append', default=[], help="'user@realm!tokenid=secret' (repeatable)")
    p.add_argument('--time-scale', type=float, default=0.0)
    p.add_argument('--certdir', required=True)
    p.add_argument('--port', type=int, default=0, help='TCP port (default: a free one)')
    p.add_argument('--serve-forever', action='store_true', help='ignore stdin; serve until SIGTERM')
    args = p.parse_args()
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
