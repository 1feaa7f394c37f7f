#!/usr/bin/env python3
"""A stateful stand-in for the parts of Azure Resource Manager polyvisor's Azure driver uses,
plus the Microsoft Entra ID token endpoint (so `authority_host` can point at it).

Project-owned test backend (not Azure): Microsoft.Compute virtualMachines (+ start, powerOff,
deallocate, restart, instance view), disks, snapshots, Microsoft.Network networkInterfaces,
long-running operations (`Azure-AsyncOperation` + `Location` + `Retry-After`), 429 throttling
and never-ending operations on demand. Status codes and shapes follow the official REST specs
(Azure/azure-rest-api-specs: ComputeRP 2024-07-01 virtualMachine.json, DiskRP 2024-03-02
snapshot.json/disk.json, Network 2024-03-01); `tests/sdk_scenario.py` proves them with
Microsoft's Python SDK (see testing/azure/README.md for what is not proven).

Run: armstandin.py --host 127.0.9.5 --port 8443 --cert c.pem --key k.pem --config conf.json
(--port 0: any free port). The first stdout line is a JSON readiness record.

Test controls (no auth, loopback only): POST /_standin/faults {"throttle": N, "retry_after": S,
"hang_ops": bool, "token_ttl": S, "op_delay": S}; GET /_standin/stats.
"""

import argparse
import json
import re
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.RLock()
STATE = {"res": {}, "gallery": {}, "ops": {}, "tokens": {}, "nic_seq": 3, "faults": {}, "stats": {"token_requests": 0, "arm_requests": 0}}
CONF = {}
TRAFFIC = {"dir": None, "n": 0}

VERSIONS = {
    "microsoft.compute/virtualmachines": "2024-07-01",
    "microsoft.compute/disks": "2024-03-02",
    "microsoft.compute/snapshots": "2024-03-02",
    "microsoft.network/networkinterfaces": "2024-03-01",
    "microsoft.compute/galleries": "2023-07-03",
}
TYPE_NAMES = {
    "microsoft.compute/virtualmachines": "Microsoft.Compute/virtualMachines",
    "microsoft.compute/disks": "Microsoft.Compute/disks",
    "microsoft.compute/snapshots": "Microsoft.Compute/snapshots",
    "microsoft.network/networkinterfaces": "Microsoft.Network/networkInterfaces",
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.()-]{0,79}$")


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())


def arm_error(code, message):
    return {"error": {"code": code, "message": message}}


def rid(typ, name):
    return "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (CONF["subscription_id"], CONF["resource_group"], TYPE_NAMES[typ], name)


def key(rid_):
    return rid_.lower()


# ---- certificate credentials -----------------------------------------------------------


def b64url_decode(part):
    import base64
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_assertion(form, token_url):
    """Verifies an RFC 7523 client assertion the way Entra ID does for a certificate
    credential: RS256/PS256 signature by the registered certificate (CONF client_certificate,
    a PEM file), found by its `x5t#S256` (or legacy SHA-1 `x5t`) thumbprint; aud = the token
    endpoint, iss = sub = client_id, within nbf/exp. Returns an AADSTS message or None."""
    import base64
    import hashlib
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return "AADSTS50027: invalid client_assertion_type"
    path = CONF.get("client_certificate")
    if not path:
        return "AADSTS700027: no certificate is registered for this application"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        cert = x509.load_pem_x509_certificate(open(path, "rb").read())
        der = cert.public_bytes(serialization.Encoding.DER)
        h64, c64, s64 = form["client_assertion"].split(".")
        header, claims, sig = json.loads(b64url_decode(h64)), json.loads(b64url_decode(c64)), b64url_decode(s64)
    except Exception as e:  # malformed assertion
        return "AADSTS50012: malformed client assertion (%s)" % type(e).__name__
    enc = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    # MSAL pads its base64url thumbprints ("="); JWTs usually do not: compare unpadded.
    thumb = lambda k: str(header.get(k, "")).rstrip("=")
    if thumb("x5t#S256") != enc(hashlib.sha256(der).digest()) and thumb("x5t") != enc(hashlib.sha1(der).digest()):
        return "AADSTS700027: the certificate with the assertion's thumbprint is not registered"
    pad = {"RS256": padding.PKCS1v15(), "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)}
    if header.get("alg") not in pad:
        return "AADSTS5002730: unsupported assertion algorithm"
    try:
        cert.public_key().verify(sig, ("%s.%s" % (h64, c64)).encode(), pad[header["alg"]], hashes.SHA256())
    except Exception:
        return "AADSTS700027: Client assertion failed signature validation."
    now = time.time()
    if claims.get("aud") != token_url:
        return "AADSTS700212: the assertion's audience is not the token endpoint"
    if claims.get("iss") != CONF["client_id"] or claims.get("sub") != CONF["client_id"]:
        return "AADSTS700021: the assertion's issuer/subject is not the client"
    if not (claims.get("exp", 0) > now and claims.get("nbf", 0) <= now + 300):
        return "AADSTS700024: the client assertion is not within its valid time range"
    STATE["stats"]["assertions"] = STATE["stats"].get("assertions", 0) + 1
    return None


# ---- long-running operations ---------------------------------------------------------


def new_op(typ, on_done, fail=None):
    op = uuid.uuid4().hex
    delay = STATE["faults"].get("op_delay", CONF.get("op_delay", 0.4))
    STATE["ops"][op] = {"typ": typ, "start": time.time(), "due": time.time() + delay, "done": False, "on_done": on_done,
                        "fail": fail, "status": "InProgress", "hang": bool(STATE["faults"].get("hang_ops"))}
    return op


def settle():
    """Completes every due operation (lazy time-based transitions)."""
    t = time.time()
    for op in STATE["ops"].values():
        if not op["done"] and not op["hang"] and t >= op["due"]:
            op["done"] = True
            op["end"] = t
            if op["fail"]:
                op["status"] = "Failed"
            else:
                op["status"] = "Succeeded"
                if op["on_done"]:
                    op["on_done"]()


def op_headers(base, typ, op):
    ns = "Microsoft.Network" if typ.startswith("microsoft.network") else "Microsoft.Compute"
    url = "%s/subscriptions/%s/providers/%s/locations/%s/operations/%s?api-version=%s" % (
        base, CONF["subscription_id"], ns, CONF["location"], op, VERSIONS[typ])
    return {"Azure-AsyncOperation": url, "Location": url + "&monitor=true", "Retry-After": "1"}


# ---- resources --------------------------------------------------------------------------


def get_res(typ, name):
    return STATE["res"].get(key(rid(typ, name)))


def find_id(id_):
    return STATE["res"].get(key(id_))


def attached_vm(res_id):
    for r in STATE["res"].values():
        if r["type"].lower() != "microsoft.compute/virtualmachines":
            continue
        p = r["properties"]
        if key(p["storageProfile"]["osDisk"].get("managedDisk", {}).get("id", "")) == key(res_id):
            return r
        for n in p.get("networkProfile", {}).get("networkInterfaces", []):
            if key(n.get("id", "")) == key(res_id):
                return r
    return None


def vm_view(vm, expand):
    out = json.loads(json.dumps(vm))
    power = out.pop("_power")
    out.pop("_transient", None)
    if expand:
        out["properties"]["instanceView"] = {
            "statuses": [
                {"code": "ProvisioningState/%s" % out["properties"]["provisioningState"].lower(), "level": "Info",
                 "displayStatus": "Provisioning " + out["properties"]["provisioningState"].lower()},
                {"code": "PowerState/%s" % power, "level": "Info", "displayStatus": "VM " + power},
            ]
        }
    return out


def public(r, expand=False):
    if r["type"].lower() == "microsoft.compute/virtualmachines":
        return vm_view(r, expand)
    return {k: v for k, v in r.items() if not k.startswith("_")}


def make_disk(name, body, create_type="microsoft.compute/disks"):
    props = body.get("properties") or {}
    cd = props.get("creationData") or {}
    if cd.get("createOption") not in ("Copy", "Empty", "FromImage"):
        return None, (400, arm_error("InvalidParameter", "creationData.createOption must be Copy, Empty or FromImage"))
    size = props.get("diskSizeGB")
    os_type = props.get("osType")
    if cd.get("createOption") == "FromImage":
        ref = (cd.get("galleryImageReference") or {}).get("id", "")
        ver = STATE["gallery"].get(key(ref))
        if ver is None:
            return None, (404, arm_error("NotFound", "The gallery image version %s was not found." % ref))
        img = STATE["gallery"][key(ref.rsplit("/versions/", 1)[0])]
        size = max(size or 0, ver["properties"]["storageProfile"]["osDiskImage"]["sizeInGB"])
        os_type = os_type or img["properties"]["osType"]
    elif cd.get("createOption") == "Copy":
        src = find_id(cd.get("sourceResourceId", ""))
        if src is None or src["type"].lower() not in ("microsoft.compute/disks", "microsoft.compute/snapshots"):
            return None, (404, arm_error("NotFound", "Source resource not found: the copy source does not exist."))
        size = max(size or 0, src["properties"].get("diskSizeGB", 30))
        os_type = os_type or src["properties"].get("osType")
    elif not size:
        return None, (400, arm_error("InvalidParameter", "diskSizeGB is required for Empty disks"))
    r = {
        "id": rid(create_type, name), "name": name, "type": TYPE_NAMES[create_type], "location": body.get("location", CONF["location"]),
        "tags": body.get("tags") or {},
        "sku": body.get("sku") or {"name": "Standard_LRS", "tier": "Standard"},
        "properties": {
            "creationData": cd, "diskSizeGB": size, "timeCreated": now_iso(), "provisioningState": "Creating",
            "diskSizeBytes": size * 1024 ** 3, "uniqueId": str(uuid.uuid4()),
        },
    }
    if os_type:
        r["properties"]["osType"] = os_type
    if create_type == "microsoft.compute/disks":
        r["properties"]["diskState"] = "Unattached"
    else:
        r["properties"]["incremental"] = bool(props.get("incremental", False))
    return r, None


def make_nic(name, body):
    props = body.get("properties") or {}
    cfgs = props.get("ipConfigurations") or []
    if not cfgs or not (cfgs[0].get("properties") or {}).get("subnet", {}).get("id"):
        return None, (400, arm_error("InvalidRequestFormat", "ipConfigurations[0].properties.subnet.id is required"))
    STATE["nic_seq"] += 1
    n = STATE["nic_seq"]
    nid = rid("microsoft.network/networkinterfaces", name)
    out_cfgs = []
    for i, c in enumerate(cfgs):
        cp = c.get("properties") or {}
        out_cfgs.append({
            "name": c.get("name", "ipconfig%d" % (i + 1)), "id": "%s/ipConfigurations/%s" % (nid, c.get("name", "ipconfig1")),
            "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
            "properties": {"provisioningState": "Succeeded", "privateIPAddress": "10.0.0.%d" % (n % 250 + 4),
                           "privateIPAllocationMethod": cp.get("privateIPAllocationMethod", "Dynamic"),
                           "subnet": {"id": cp["subnet"]["id"]}, "primary": i == 0, "privateIPAddressVersion": "IPv4"},
        })
    r = {
        "id": nid, "name": name, "type": "Microsoft.Network/networkInterfaces", "location": body.get("location", CONF["location"]),
        "tags": body.get("tags") or {}, "etag": 'W/"%s"' % uuid.uuid4(),
        "properties": {"provisioningState": "Updating", "ipConfigurations": out_cfgs,
                       "macAddress": "00-0D-3A-%02X-%02X-%02X" % ((n >> 16) & 255, (n >> 8) & 255, n & 255),
                       "resourceGuid": str(uuid.uuid4()), "enableAcceleratedNetworking": False, "enableIPForwarding": False},
    }
    return r, None


def make_vm(name, body):
    props = body.get("properties") or {}
    osd = (props.get("storageProfile") or {}).get("osDisk") or {}
    disk_id = (osd.get("managedDisk") or {}).get("id", "")
    disk = find_id(disk_id)
    if osd.get("createOption") != "Attach" or disk is None:
        return None, (400, arm_error("InvalidParameter", "storageProfile.osDisk must attach an existing managed disk"))
    other = attached_vm(disk_id)
    if other is not None:
        return None, (409, arm_error("OperationNotAllowed", "Disk %s is already attached to VM %s." % (disk["name"], other["name"])))
    nics = (props.get("networkProfile") or {}).get("networkInterfaces") or []
    if not nics:
        return None, (400, arm_error("InvalidParameter", "networkProfile.networkInterfaces is required"))
    for n in nics:
        if find_id(n.get("id", "")) is None:
            return None, (400, arm_error("InvalidResourceReference", "Resource %s referenced by resource %s was not found." % (n.get("id"), name)))
    size = (props.get("hardwareProfile") or {}).get("vmSize") or "Standard_B1s"
    r = {
        "id": rid("microsoft.compute/virtualmachines", name), "name": name, "type": "Microsoft.Compute/virtualMachines",
        "location": body.get("location", CONF["location"]), "tags": body.get("tags") or {},
        "properties": {
            "vmId": str(uuid.uuid4()), "hardwareProfile": {"vmSize": size},
            "storageProfile": {"osDisk": {"osType": osd.get("osType") or disk["properties"].get("osType", "Linux"),
                                          "name": disk["name"], "createOption": "Attach", "caching": "ReadWrite",
                                          "managedDisk": {"id": disk["id"], "storageAccountType": "StandardSSD_LRS"},
                                          "deleteOption": osd.get("deleteOption", "Detach"), "diskSizeGB": disk["properties"].get("diskSizeGB")},
                               "dataDisks": []},
            "networkProfile": {"networkInterfaces": [{"id": find_id(n["id"])["id"], "properties": {"primary": bool((n.get("properties") or {}).get("primary", i == 0)),
                                                                                          "deleteOption": (n.get("properties") or {}).get("deleteOption", "Detach")}}
                                                     for i, n in enumerate(nics)]},
            "provisioningState": "Creating", "timeCreated": now_iso(),
        },
        "_power": "starting",
    }
    return r, None


# ---- handler ----------------------------------------------------------------------------

PATH_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<action>[^/]+))?)?$", re.I)
GALLERY_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/galleries/(?P<g>[^/]+)"
                        r"(?:/images(?:/(?P<i>[^/]+)(?:/versions(?:/(?P<v>[^/]+))?)?)?)?$", re.I)
VERSION_NAME_RE = re.compile(r"^\d+\.\d+\.\d+$")
LISTALL_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Compute/virtualMachines$", re.I)
OP_RE = re.compile(r"^/subscriptions/[^/]+/providers/[^/]+/locations/[^/]+/operations/(?P<op>[^/]+)$", re.I)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server_version = "armstandin/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("armstandin: %s\n" % (fmt % args))

    def base(self):
        return "https://%s" % self.headers.get("Host", "%s:%d" % self.server.server_address[:2])

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return raw

    def record(self, status, body, hdrs):
        """Writes the request/response pair in oav's traffic format (`oav validate-traffic`)
        when the stand-in runs with --traffic-dir; ARM calls only (no token endpoint, no
        test controls), the bearer token left out."""
        req = getattr(self, "_req", None)
        if not TRAFFIC["dir"] or req is None:
            return
        method, url, req_body = req
        with LOCK:
            TRAFFIC["n"] += 1
            n = TRAFFIC["n"]
        pair = {
            "liveRequest": {"method": method, "url": url, "body": req_body,
                            "headers": {k: v for k, v in self.headers.items() if k.lower() != "authorization"}},
            "liveResponse": {"statusCode": str(status), "headers": hdrs, "body": body},
        }
        with open("%s/%06d-%s.json" % (TRAFFIC["dir"], n, method.lower()), "w") as f:
            json.dump(pair, f, indent=1)

    def send(self, status, body=None, headers=None, req_body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        hdrs = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": str(uuid.uuid4())}
        if body is not None:
            hdrs["Content-Type"] = "application/json; charset=utf-8"
        hdrs.update(headers or {})
        self.record(status, body, hdrs)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    # -- dispatch
    def do_GET(self):
        self.route("GET")

    def do_PUT(self):
        self.route("PUT")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PATCH(self):
        self.route("PATCH")

    def route(self, method):
        self._req = None  # one handler serves a keep-alive connection: no stale pair
        raw = self.body()
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        path = u.path.rstrip("/")
        try:
            if path.startswith("/_standin/"):
                return self.control(method, path, raw)
            if path.endswith("/oauth2/v2.0/token") or path.endswith("/oauth2/token"):
                return self.token(raw)
            if path.endswith("/.well-known/openid-configuration"):
                tenant = path.strip("/").split("/")[0]
                b = self.base()
                return self.send(200, {"token_endpoint": "%s/%s/oauth2/v2.0/token" % (b, tenant),
                                       "authorization_endpoint": "%s/%s/oauth2/v2.0/authorize" % (b, tenant),
                                       "issuer": "%s/%s/v2.0" % (b, tenant), "tenant_region_scope": "WW",
                                       "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                                       "jwks_uri": "%s/%s/discovery/v2.0/keys" % (b, tenant)})
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            self._req = (method, self.base() + self.path, parsed)
            with LOCK:
                STATE["stats"]["arm_requests"] += 1
                if not self.authorized():
                    return self.send(401, arm_error("InvalidAuthenticationToken", "The access token is invalid or expired."),
                                     {"WWW-Authenticate": 'Bearer authorization_uri="%s", error="invalid_token"' % self.base()})
                f = STATE["faults"]
                if f.get("throttle", 0) > 0:
                    f["throttle"] -= 1
                    return self.send(429, arm_error("TooManyRequests", "The request is being throttled."),
                                     {"Retry-After": str(f.get("retry_after", 1))})
                settle()
                m = OP_RE.match(path)
                if m and method == "GET":
                    return self.operation(m.group("op"), "monitor" in q)
                m = LISTALL_RE.match(path)
                if m and method == "GET":
                    return self.list_all(m.group("sub"), q)
                m = GALLERY_RE.match(path)
                if m:
                    return self.gallery(method, path, q, m, raw)
                m = PATH_RE.match(path)
                if not m:
                    return self.send(404, arm_error("InvalidResourceType", "The resource type could not be found."))
                if m.group("sub") != CONF["subscription_id"]:
                    return self.send(404, arm_error("SubscriptionNotFound", "The subscription could not be found."))
                if m.group("rg").lower() != CONF["resource_group"].lower():
                    return self.send(404, arm_error("ResourceGroupNotFound", "Resource group '%s' could not be found." % m.group("rg")))
                typ = ("%s/%s" % (m.group("ns"), m.group("type"))).lower()
                if typ not in VERSIONS:
                    return self.send(404, arm_error("InvalidResourceType", "The resource type could not be found."))
                if q.get("api-version") != VERSIONS[typ]:
                    return self.send(400, arm_error("InvalidApiVersionParameter", "The api-version '%s' is invalid for %s; this stand-in serves %s." % (q.get("api-version"), typ, VERSIONS[typ])))
                return self.resource(method, typ, m.group("name"), m.group("action"), q, raw)
        except Exception as e:  # a stand-in bug must be visible, not a hang
            import traceback
            traceback.print_exc()
            return self.send(500, arm_error("InternalServerError", "stand-in error: %s" % e))

    def authorized(self):
        h = self.headers.get("Authorization", "")
        if not h.startswith("Bearer "):
            return False
        exp = STATE["tokens"].get(h[7:])
        return exp is not None and exp > time.time()

    def token(self, raw):
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        with LOCK:
            STATE["stats"]["token_requests"] += 1
            if form.get("grant_type") != "client_credentials":
                return self.send(400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003: unsupported grant type"})
            if form.get("client_id") != CONF["client_id"]:
                return self.send(400, {"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found in the directory."})
            if "client_assertion" in form:
                problem = check_assertion(form, "%s%s" % (self.base(), urlsplit(self.path).path))
                if problem:
                    return self.send(401, {"error": "invalid_client", "error_description": problem})
            elif form.get("client_secret") != CONF["client_secret"]:
                return self.send(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
            ttl = int(STATE["faults"].get("token_ttl", 3599))
            tok = "standin." + uuid.uuid4().hex
            STATE["tokens"][tok] = time.time() + ttl
            return self.send(200, {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": tok})

    def control(self, method, path, raw):
        with LOCK:
            if path == "/_standin/faults" and method == "POST":
                STATE["faults"].update(json.loads(raw or b"{}"))
                if STATE["faults"].get("hang_ops") is False:
                    pass
                return self.send(200, STATE["faults"])
            if path == "/_standin/stats":
                return self.send(200, dict(STATE["stats"], resources=sorted([r["id"] for r in STATE["res"].values()] + [r["id"] for r in STATE["gallery"].values()])))
            if path == "/_standin/expire-tokens" and method == "POST":
                STATE["tokens"].clear()
                return self.send(200, {})
        return self.send(404, arm_error("NotFound", "no such control"))

    def gallery(self, method, path, q, m, raw):
        """Azure Compute Gallery (GalleryRP 2023-07-03): galleries, image definitions and image
        versions: GET/list, PUT (create-or-update, LRO), PATCH (tags), DELETE (LRO). Status
        codes per gallery.json: PUT 200/201/202, PATCH 200, DELETE 200/202/204."""
        if q.get("api-version") != "2023-07-03":
            return self.send(400, arm_error("InvalidApiVersionParameter", "unsupported api-version for galleries"))
        if m.group("sub") != CONF["subscription_id"] or m.group("rg").lower() != CONF["resource_group"].lower():
            return self.send(404, arm_error("ResourceGroupNotFound", "Resource group '%s' could not be found." % m.group("rg")))
        g, i, v = m.group("g"), m.group("i"), m.group("v")
        gid = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/galleries/%s" % (CONF["subscription_id"], CONF["resource_group"], g)
        listing = path.lower().endswith("/images") or path.lower().endswith("/versions")
        if listing:
            if method != "GET":
                return self.send(405, arm_error("MethodNotAllowed", "not allowed"))
            parent = gid if i is None else "%s/images/%s" % (gid, i)
            if key(parent) not in STATE["gallery"]:
                return self.send(404, arm_error("ParentResourceNotFound", "The parent resource %s was not found." % parent))
            depth = parent.count("/") + 2
            items = [public(r) for k, r in STATE["gallery"].items() if k.startswith(key(parent) + "/") and r["id"].count("/") == depth]
            items.sort(key=lambda r: r["name"].lower())
            return self.send(200, {"value": items})
        rid_ = gid if i is None else ("%s/images/%s" % (gid, i) if v is None else "%s/images/%s/versions/%s" % (gid, i, v))
        typ = ("Microsoft.Compute/galleries" if i is None else "Microsoft.Compute/galleries/images" if v is None
               else "Microsoft.Compute/galleries/images/versions")
        cur = STATE["gallery"].get(key(rid_))
        if method == "GET":
            if cur is None:
                return self.send(404, arm_error("ResourceNotFound", "The Resource '%s' under resource group '%s' was not found." % (typ, CONF["resource_group"])))
            return self.send(200, public(cur))
        if method == "DELETE":
            if cur is None:
                return self.send(204)
            children = [k for k in STATE["gallery"] if k.startswith(key(rid_) + "/")]
            if children:
                return self.send(409, arm_error("CannotDeleteResource", "Cannot delete %s since it has nested resources." % rid_))
            cur["properties"]["provisioningState"] = "Deleting"

            def gone(k=key(rid_)):
                STATE["gallery"].pop(k, None)
            op = new_op("microsoft.compute/galleries", gone)
            return self.send(202, None, op_headers(self.base(), "microsoft.compute/galleries", op))
        body = json.loads(raw or b"{}")
        if method == "PATCH":
            if cur is None:
                return self.send(404, arm_error("ResourceNotFound", "The Resource '%s' was not found." % typ))
            if "tags" in body:
                cur["tags"] = body["tags"] or {}
            return self.send(200, public(cur), None, raw)
        if method != "PUT":
            return self.send(405, arm_error("MethodNotAllowed", "not allowed"))
        if not body.get("location"):
            return self.send(400, arm_error("LocationRequired", "The location property is required for this definition."))
        parent = rid_.rsplit("/", 2)[0]
        if i is not None and key(parent) not in STATE["gallery"]:
            return self.send(404, arm_error("ParentResourceNotFound", "Can not perform requested operation on nested resource. Parent resource '%s' not found." % parent))
        if cur is not None:
            if cur["properties"].get("provisioningState") == "Deleting":
                return self.send(409, arm_error("Conflict", "The resource is being deleted."))
            cur["tags"] = body.get("tags") or {}
            return self.send(200, public(cur), None, raw)
        props = body.get("properties") or {}
        if i is None:
            out = {"identifier": {"uniqueName": "%s-%s" % (CONF["subscription_id"], g.upper())}, "provisioningState": "Creating"}
        elif v is None:
            ident = props.get("identifier") or {}
            if props.get("osType") not in ("Linux", "Windows") or props.get("osState") not in ("Specialized", "Generalized") \
                    or not all(ident.get(x) for x in ("publisher", "offer", "sku")):
                return self.send(400, arm_error("InvalidParameter", "osType, osState and identifier (publisher, offer, sku) are required."), None, raw)
            out = {"osType": props["osType"], "osState": props["osState"], "identifier": ident,
                   "hyperVGeneration": props.get("hyperVGeneration", "V1"), "provisioningState": "Creating"}
        else:
            if not VERSION_NAME_RE.match(v):
                return self.send(400, arm_error("InvalidParameter", "The gallery image version name must be Major.Minor.Patch."), None, raw)
            src_id = (((props.get("storageProfile") or {}).get("osDiskImage") or {}).get("source") or {}).get("id", "")
            src = find_id(src_id)
            if src is None or src["type"].lower() not in ("microsoft.compute/disks", "microsoft.compute/snapshots"):
                return self.send(400, arm_error("InvalidParameter", "storageProfile.osDiskImage.source.id must name an existing managed disk or snapshot."), None, raw)
            regions = ((props.get("publishingProfile") or {}).get("targetRegions")) or [{"name": CONF["location"]}]
            out = {"publishingProfile": {"targetRegions": [dict({"regionalReplicaCount": 1, "storageAccountType": "Standard_LRS",
                                                                 "excludeFromLatest": False}, **t) for t in regions],
                                         "replicaCount": 1, "publishedDate": now_iso(), "storageAccountType": "Standard_LRS",
                                         "excludeFromLatest": bool((props.get("publishingProfile") or {}).get("excludeFromLatest", False))},
                   "storageProfile": {"osDiskImage": {"source": {"id": src["id"]}, "sizeInGB": src["properties"].get("diskSizeGB", 30),
                                                      "hostCaching": "ReadWrite"}},
                   "provisioningState": "Creating"}
        r = {"id": rid_, "name": rid_.rsplit("/", 1)[1], "type": typ, "location": body["location"], "tags": body.get("tags") or {},
             "properties": out}
        STATE["gallery"][key(rid_)] = r

        def done(r=r):
            r["properties"]["provisioningState"] = "Succeeded"
        op = new_op("microsoft.compute/galleries", done)
        return self.send(201, public(r), op_headers(self.base(), "microsoft.compute/galleries", op), raw)

    def list_all(self, sub, q):
        """VirtualMachines_ListAll; `statusOnly=true` gives the instance views (how a client
        reads every VM's power state in one call)."""
        if sub != CONF["subscription_id"]:
            return self.send(404, arm_error("SubscriptionNotFound", "The subscription could not be found."))
        if q.get("api-version") != VERSIONS["microsoft.compute/virtualmachines"]:
            return self.send(400, arm_error("InvalidApiVersionParameter", "unsupported api-version"))
        status_only = q.get("statusOnly", "").lower() == "true"
        items = []
        for r in sorted(STATE["res"].values(), key=lambda r: r["name"].lower()):
            if r["type"].lower() != "microsoft.compute/virtualmachines":
                continue
            v = vm_view(r, status_only)
            if status_only:
                v = {"id": v["id"], "name": v["name"], "type": v["type"], "location": v["location"],
                     "properties": {"instanceView": v["properties"]["instanceView"]}}
            items.append(v)
        return self.send(200, {"value": items})

    def operation(self, op_id, monitor):
        op = STATE["ops"].get(op_id)
        if op is None:
            return self.send(404, arm_error("NotFound", "operation not found"))
        if monitor:
            return self.send(202 if op["status"] == "InProgress" else 200, None if op["status"] == "InProgress" else {},
                             op_headers(self.base(), op["typ"], op_id) if op["status"] == "InProgress" else {})
        body = {"name": op_id, "status": op["status"], "startTime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(op["start"]))}
        if op["status"] != "InProgress":
            body["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(op.get("end", time.time())))
        if op["status"] == "Failed":
            body["error"] = {"code": op["fail"][0], "message": op["fail"][1]}
        return self.send(200, body)

    def resource(self, method, typ, name, action, q, raw):
        if name is None:
            if method != "GET":
                return self.send(405, arm_error("MethodNotAllowed", "not allowed"))
            items = [public(r, q.get("$expand") == "instanceView") for r in STATE["res"].values() if r["type"].lower() == typ]
            items.sort(key=lambda r: r["name"].lower())
            return self.send(200, {"value": items})
        if not NAME_RE.match(name):
            return self.send(400, arm_error("InvalidResourceName", "Resource name %s is invalid." % name))
        cur = get_res(typ, name)
        if action:
            return self.vm_action(typ, name, action, cur, q, raw)
        if method == "GET":
            if cur is None:
                return self.send(404, arm_error("ResourceNotFound", "The Resource '%s/%s' under resource group '%s' was not found." % (TYPE_NAMES[typ], name, CONF["resource_group"])))
            return self.send(200, public(cur, q.get("$expand") == "instanceView"))
        if method == "DELETE":
            return self.delete(typ, name, cur)
        body = json.loads(raw or b"{}")
        if method == "PATCH":
            return self.patch(typ, name, cur, body, raw)
        if method == "PUT":
            return self.put(typ, name, cur, body, raw)
        return self.send(405, arm_error("MethodNotAllowed", "not allowed"))

    def put(self, typ, name, cur, body, raw):
        if not body.get("location"):
            return self.send(400, arm_error("LocationRequired", "The location property is required for this definition."))
        if cur is not None:
            if cur["properties"].get("provisioningState") == "Deleting":
                return self.send(409, arm_error("Conflict", "The resource is being deleted."))
            # create-or-update: tags may change; immutable properties stay.
            cur["tags"] = body.get("tags") or {}
            return self.send(200, public(cur), None, raw)
        if typ in ("microsoft.compute/disks", "microsoft.compute/snapshots"):
            r, err = make_disk(name, body, typ)
        elif typ == "microsoft.network/networkinterfaces":
            r, err = make_nic(name, body)
        else:
            r, err = make_vm(name, body)
        if err:
            return self.send(err[0], err[1], None, raw)
        STATE["res"][key(r["id"])] = r

        def done(r=r, typ=typ):
            r["properties"]["provisioningState"] = "Succeeded"
            if typ == "microsoft.compute/virtualmachines":
                r["_power"] = "running"
                d = find_id(r["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"])
                if d:
                    d["properties"]["diskState"] = "Attached"
                    d["managedBy"] = r["id"]
        op = new_op(typ, done)
        # Per the specs: Disks/Snapshots_CreateOrUpdate answer 200/202, VMs and NICs 200/201.
        status = 202 if typ in ("microsoft.compute/disks", "microsoft.compute/snapshots") else 201
        return self.send(status, public(r), op_headers(self.base(), typ, op), raw)

    def patch(self, typ, name, cur, body, raw):
        if cur is None:
            return self.send(404, arm_error("ResourceNotFound", "The Resource '%s/%s' was not found." % (TYPE_NAMES[typ], name)))
        if "tags" in body:
            cur["tags"] = body["tags"] or {}
        osd = (((body.get("properties") or {}).get("storageProfile") or {}).get("osDisk") or {})
        if typ == "microsoft.compute/virtualmachines" and osd.get("managedDisk", {}).get("id"):
            if cur["_power"] not in ("deallocated", "stopped"):
                return self.send(409, arm_error("OperationNotAllowed", "OS disk swap requires the VM to be stopped (deallocated)."), None, raw)
            new = find_id(osd["managedDisk"]["id"])
            if new is None:
                return self.send(400, arm_error("InvalidParameter", "The managed disk does not exist."), None, raw)
            old = find_id(cur["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"])
            if old:
                old["properties"]["diskState"] = "Unattached"
                old.pop("managedBy", None)
            new["properties"]["diskState"] = "Reserved"
            new["managedBy"] = cur["id"]
            cur["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"] = new["id"]
            cur["properties"]["storageProfile"]["osDisk"]["name"] = new["name"]
        if typ == "microsoft.compute/virtualmachines":
            cur["properties"]["provisioningState"] = "Updating"

            def done(cur=cur):
                cur["properties"]["provisioningState"] = "Succeeded"
            op = new_op(typ, done)
            return self.send(200, public(cur), op_headers(self.base(), typ, op), raw)
        return self.send(200, public(cur), None, raw)

    def delete(self, typ, name, cur):
        if cur is None:
            return self.send(204)
        if typ != "microsoft.compute/virtualmachines":
            vm = attached_vm(cur["id"])
            if vm is not None:
                if typ == "microsoft.network/networkinterfaces":
                    return self.send(400, arm_error("NicInUse", "Network Interface %s is used by existing resource %s." % (cur["id"], vm["id"])))
                return self.send(409, arm_error("OperationNotAllowed", "Disk %s is attached to VM %s." % (name, vm["id"])))
        if cur["properties"].get("provisioningState") == "Deleting":
            pass
        cur["properties"]["provisioningState"] = "Deleting"

        def done(k=key(cur["id"]), typ=typ, cur=cur):
            STATE["res"].pop(k, None)
            if typ == "microsoft.compute/virtualmachines":
                for d in [find_id(cur["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"])]:
                    if d:
                        d["properties"]["diskState"] = "Unattached"
                        d.pop("managedBy", None)
        op = new_op(typ, done)
        return self.send(202, None, op_headers(self.base(), typ, op))

    def vm_action(self, typ, name, action, cur, q, raw):
        if typ != "microsoft.compute/virtualmachines" or self.command != "POST":
            return self.send(404, arm_error("NotFound", "no such action"))
        if cur is None:
            return self.send(404, arm_error("ResourceNotFound", "The Resource 'Microsoft.Compute/virtualMachines/%s' under resource group '%s' was not found." % (name, CONF["resource_group"])))
        if cur["properties"].get("provisioningState") == "Deleting":
            return self.send(409, arm_error("Conflict", "The VM is being deleted."))
        transitions = {"start": ("starting", "running"), "deallocate": ("deallocating", "deallocated"),
                       "poweroff": ("stopping", "stopped"), "restart": ("starting", "running")}
        a = action.lower()
        if a not in transitions:
            return self.send(404, arm_error("NotFound", "no such action"))
        if a == "restart" and cur["_power"] != "running":
            return self.send(409, arm_error("OperationNotAllowed", "Cannot restart the VM because it is not running."))
        mid, end = transitions[a]
        if not (a == "start" and cur["_power"] == "running") and not (a == "deallocate" and cur["_power"] == "deallocated"):
            cur["_power"] = mid

        def done(cur=cur, end=end):
            cur["_power"] = end
        op = new_op(typ, done)
        return self.send(202, None, op_headers(self.base(), typ, op))


class TlsServer(ThreadingHTTPServer):
    """TLS handshakes run in the per-connection thread: a client that connects and never
    speaks cannot stall the accept loop."""

    daemon_threads = True
    ctx = None

    def process_request_thread(self, request, client_address):
        try:
            request.settimeout(30)
            request = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)


# ---- seed --------------------------------------------------------------------------------


def seed(guests, subnet):
    for g in guests:
        name = g["name"]
        disk = rid("microsoft.compute/disks", name + "-osdisk")
        nic = rid("microsoft.network/networkinterfaces", name + "-nic")
        STATE["res"][key(disk)] = {"id": disk, "name": name + "-osdisk", "type": "Microsoft.Compute/disks", "location": CONF["location"],
                                   "tags": {}, "sku": {"name": "StandardSSD_LRS", "tier": "Standard"}, "managedBy": rid("microsoft.compute/virtualmachines", name),
                                   "properties": {"creationData": {"createOption": "FromImage"}, "diskSizeGB": 30, "osType": "Linux",
                                                  "diskState": "Attached", "provisioningState": "Succeeded", "timeCreated": now_iso(),
                                                  "diskSizeBytes": 30 * 1024 ** 3, "uniqueId": str(uuid.uuid4())}}
        r, _ = make_nic(name + "-nic", {"location": CONF["location"], "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}]}})
        r["properties"]["provisioningState"] = "Succeeded"
        STATE["res"][key(nic)] = r
        vm, err = make_vm(name, {"location": CONF["location"], "tags": g.get("tags", {}), "properties": {
            "hardwareProfile": {"vmSize": g.get("size", "Standard_B1s")},
            "storageProfile": {"osDisk": {"createOption": "Attach", "osType": "Linux", "managedDisk": {"id": disk}}},
            "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": True}}]}}})
        if err:
            raise SystemExit("seed failed: %s" % (err,))
        vm["properties"]["provisioningState"] = "Succeeded"
        vm["_power"] = g.get("power", "deallocated")
        STATE["res"][key(vm["id"])] = vm


def seed_gallery(g):
    base = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/galleries/%s" % (
        CONF["subscription_id"], CONF["resource_group"], g["gallery"])
    img_id = "%s/images/%s" % (base, g["image"])
    STATE["gallery"].setdefault(key(base), {"id": base, "name": g["gallery"], "type": "Microsoft.Compute/galleries", "location": CONF["location"],
                                            "tags": {}, "properties": {"identifier": {"uniqueName": g["gallery"].upper()}, "provisioningState": "Succeeded"}})
    STATE["gallery"][key(img_id)] = {
        "id": img_id, "name": g["image"], "type": "Microsoft.Compute/galleries/images", "location": CONF["location"],
        "properties": {"osType": g.get("osType", "Linux"), "osState": g.get("osState", "Specialized"),
                       "identifier": {"publisher": "polyvisor", "offer": "ci", "sku": g["image"]},
                       "hyperVGeneration": "V2", "provisioningState": "Succeeded"}}
    for v in g.get("versions", ["1.0.0"]):
        vid = "%s/versions/%s" % (img_id, v)
        STATE["gallery"][key(vid)] = {
            "id": vid, "name": v, "type": "Microsoft.Compute/galleries/images/versions", "location": CONF["location"],
            "properties": {"publishingProfile": {"targetRegions": [{"name": CONF["location"], "regionalReplicaCount": 1}],
                                                 "replicaCount": 1, "publishedDate": now_iso()},
                           "storageProfile": {"osDiskImage": {"sizeInGB": 30, "hostCaching": "ReadWrite"}},
                           "provisioningState": "Succeeded"}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.9.5")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--traffic-dir", help="record every ARM request/response pair there (oav traffic format)")
    a = ap.parse_args()
    CONF.update(json.load(open(a.config)))
    TRAFFIC["dir"] = a.traffic_dir
    subnet = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/default" % (
        CONF["subscription_id"], CONF["resource_group"])
    seed(CONF.get("guests", []), subnet)
    for g in CONF.get("galleries", []):
        seed_gallery(g)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv = TlsServer((a.host, a.port), Handler)
    srv.ctx = ctx
    print(json.dumps({"listening": "https://%s:%d" % (a.host, srv.server_address[1]), "subnet": subnet}), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
