#!/usr/bin/python3
"""Stand-in for the slice of the Neutron v2.0 API that Nova (fake virt driver) and the polyvisor
openstack driver use: networks, subnets and ports with create/show/list(filters)/update/delete,
kept in a JSON file so they survive restarts. Every other collection answers an empty list
(extensions, security groups, floating IPs, ...), quotas answer generous limits.

Seeded with one shared network `pv-net` (subnet 10.99.0.0/24, no DHCP) whose ports get the next
free address. It binds every port (binding:vif_type `ovs`) without an agent: there is no data
plane here, Nova's fake driver plugs nothing. Ports created without `tenant_id` belong to the
project of the caller's token (validated against Keystone, as Neutron's auth middleware does).

usage: neutron-standin.py PORT STATE_FILE
"""
import ipaddress, json, re, sys, threading, urllib.parse, urllib.request, uuid, random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9696
STATE = sys.argv[2] if len(sys.argv) > 2 else "/var/lib/osmini/neutron.json"
KEYSTONE = "http://127.0.0.1:5000/v3"
LOCK = threading.Lock()
COLL = {"networks": "network", "subnets": "subnet", "ports": "port"}

try:
    DB = json.load(open(STATE))
except (OSError, ValueError):
    net, sub = str(uuid.uuid4()), str(uuid.uuid4())
    DB = {"networks": {net: {"id": net, "name": "pv-net", "tenant_id": "", "project_id": "", "shared": True,
                             "admin_state_up": True, "status": "ACTIVE", "subnets": [sub], "mtu": 1450,
                             "router:external": False, "port_security_enabled": False}},
          "subnets": {sub: {"id": sub, "name": "pv-subnet", "network_id": net, "tenant_id": "", "project_id": "",
                            "cidr": "10.99.0.0/24", "gateway_ip": "10.99.0.1", "ip_version": 4,
                            "enable_dhcp": False, "dns_nameservers": [], "host_routes": [],
                            "allocation_pools": [{"start": "10.99.0.10", "end": "10.99.0.250"}]}},
          "ports": {}}


def save():
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(DB, f)
    import os
    os.replace(tmp, STATE)


def project_of(token):
    if not token:
        return ""
    req = urllib.request.Request(KEYSTONE + "/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["token"].get("project", {}).get("id", "")
    except Exception:
        return None


def next_ip(net_id):
    used = {ip["ip_address"] for p in DB["ports"].values() for ip in p["fixed_ips"]}
    for sub in DB["subnets"].values():
        if sub["network_id"] != net_id:
            continue
        pool = sub["allocation_pools"][0]
        a, b = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        while a <= b:
            if str(a) not in used:
                return [{"subnet_id": sub["id"], "ip_address": str(a)}]
            a += 1
    return []


def matches(obj, query):
    for k, vals in query.items():
        if k in ("fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"):
            continue
        v = obj.get(k)
        if isinstance(v, bool):
            if str(v).lower() not in [x.lower() for x in vals]:
                return False
        elif ("" if v is None else str(v)) not in vals:
            return False
    return True


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, code, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _err(self, code, kind, msg):
        self._send(code, {"NeutronError": {"type": kind, "message": msg, "detail": ""}})

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def _route(self):
        u = urllib.parse.urlsplit(self.path)
        path = re.sub(r"\.json$", "", u.path.rstrip("/"))
        return path, urllib.parse.parse_qs(u.query)

    def do_GET(self):
        path, q = self._route()
        if path in ("", "/"):
            return self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                {"rel": "self", "href": "http://127.0.0.1:%d/v2.0/" % PORT}]}]})
        if path == "/v2.0":
            return self._send(200, {"resources": []})
        m = re.match(r"^/v2\.0/quotas/([^/]+?)(/details)?$", path)
        if m:
            lim = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
                   "security_group": 10, "security_group_rule": 100, "rbac_policy": 10, "subnetpool": -1}
            if m.group(2):
                lim = {k: {"limit": v, "used": 0, "reserved": 0} for k, v in lim.items()}
            return self._send(200, {"quota": lim})
        m = re.match(r"^/v2\.0/([a-z0-9_-]+)(?:/([^/]+))?$", path)
        if not m:
            return self._err(404, "NotFound", "no such resource")
        coll, rid = m.group(1), m.group(2)
        if coll not in COLL:
            return self._send(200, {coll.replace("-", "_"): []}) if not rid else self._err(404, "NotFound", "not found")
        with LOCK:
            if rid:
                obj = DB[coll].get(rid)
                if obj is None:
                    return self._err(404, COLL[coll].capitalize() + "NotFound", "%s %s could not be found." % (COLL[coll].capitalize(), rid))
                return self._send(200, {COLL[coll]: obj})
            return self._send(200, {coll: [o for o in DB[coll].values() if matches(o, q)]})

    def do_POST(self):
        path, _ = self._route()
        body = self._body()
        if path != "/v2.0/ports" or not isinstance(body, dict) or not isinstance(body.get("port"), dict):
            return self._err(400 if path == "/v2.0/ports" else 404, "BadRequest", "only single-port creates are supported")
        req = body["port"]
        tenant = req.get("tenant_id") or req.get("project_id") or project_of(self.headers.get("X-Auth-Token"))
        if tenant is None:
            return self._err(401, "NotAuthorized", "the token could not be validated")
        with LOCK:
            net = DB["networks"].get(req.get("network_id", ""))
            if net is None:
                return self._err(404, "NetworkNotFound", "Network %s could not be found." % req.get("network_id"))
            mac = (req.get("mac_address") or "fa:16:3e:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))).lower()
            if any(p["mac_address"] == mac and p["network_id"] == net["id"] for p in DB["ports"].values()):
                return self._err(409, "MacAddressInUse", "Unable to complete operation for network %s. The mac address %s is in use." % (net["id"], mac))
            pid = str(uuid.uuid4())
            port = {"id": pid, "name": req.get("name", ""), "network_id": net["id"], "tenant_id": tenant, "project_id": tenant,
                    "mac_address": mac, "fixed_ips": next_ip(net["id"]), "device_id": req.get("device_id", ""),
                    "device_owner": req.get("device_owner", ""), "admin_state_up": True, "status": "ACTIVE",
                    "security_groups": [], "port_security_enabled": False, "binding:vif_type": "ovs",
                    "binding:vnic_type": req.get("binding:vnic_type", "normal"), "binding:host_id": req.get("binding:host_id", ""),
                    "binding:profile": req.get("binding:profile", {}), "binding:vif_details": {"port_filter": True},
                    "dns_name": "", "allowed_address_pairs": [], "extra_dhcp_opts": [], "description": "", "tags": []}
            DB["ports"][pid] = port
            save()
        return self._send(201, {"port": port})

    def do_PUT(self):
        path, _ = self._route()
        body = self._body()
        m = re.match(r"^/v2\.0/ports/([^/]+)$", path)
        if not m or not isinstance(body, dict) or not isinstance(body.get("port"), dict):
            return self._err(404, "NotFound", "only port updates are supported")
        with LOCK:
            port = DB["ports"].get(m.group(1))
            if port is None:
                return self._err(404, "PortNotFound", "Port %s could not be found." % m.group(1))
            for k, v in body["port"].items():
                if k in ("id", "network_id", "tenant_id", "project_id", "fixed_ips", "mac_address"):
                    continue
                port[k] = {} if (v is None and k == "binding:profile") else ("" if v is None else v)
            port["binding:vif_type"] = "ovs"
            save()
        return self._send(200, {"port": port})

    def do_DELETE(self):
        path, _ = self._route()
        m = re.match(r"^/v2\.0/ports/([^/]+)$", path)
        if not m:
            return self._err(404, "NotFound", "only ports can be deleted")
        with LOCK:
            if DB["ports"].pop(m.group(1), None) is None:
                return self._err(404, "PortNotFound", "Port %s could not be found." % m.group(1))
            save()
        return self._send(204)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))


with LOCK:
    save()
ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
