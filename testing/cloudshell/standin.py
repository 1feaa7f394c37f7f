"""A small stand-in of the CloudShell Automation API (the XML endpoint on port 8029 that
`cloudshell-automation-api`'s CloudShellAPISession talks to).

Implements what a cloud provider shell calls back into: SecureLogon/Logon, DecryptPassword
(the stand-in's "encryption" is base64), UpdateResourceAddress, SetAttributeValue,
SetResourceLiveStatus, WriteMessageToReservationOutput. Every call is recorded (method,
parameters) for the harness to check. Unknown methods answer a CloudShell API error.
Tokens: only the admin token given at start is accepted by SecureLogon; every other call
needs the session token SecureLogon returned (Authorization header), else HTTP 401.
"""
import base64
import json
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape, quoteattr

NS = "http://schemas.qualisystems.com/ResourceManagement/ApiCommandResult.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PREFIX = "/ResourceManagerApiService/"


def encrypt(text):
    """What the stand-in's DecryptPassword undoes."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class StandIn:
    def __init__(self, host="127.0.9.7", port=0, admin_token="admin-token"):
        self.admin_token = admin_token
        self.session_token = uuid.uuid4().hex
        self.calls = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                stand_in._handle(self)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def recorded(self, method):
        with self.lock:
            return [p for m, p in self.calls if m == method]

    def _reply(self, h, status, body):
        data = body.encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", "text/xml; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _ok(self, method, info=""):
        return ('<Response CommandName="%s" Success="true" xmlns="%s" xmlns:xsi="%s">%s</Response>'
                % (method, NS, XSI, info))

    def _error(self, method, code, message):
        return ('<Response CommandName="%s" Success="false" xmlns="%s"><ErrorCode>%d</ErrorCode>'
                "<Error>%s</Error></Response>" % (method, NS, code, escape(message)))

    def _handle(self, h):
        if not h.path.startswith(PREFIX):
            return self._reply(h, 404, "not found")
        method = h.path[len(PREFIX):]
        length = int(h.headers.get("Content-Length") or 0)
        try:
            root = ET.fromstring(h.rfile.read(length))
        except ET.ParseError:
            return self._reply(h, 400, "malformed XML")
        params = {c.tag: (c.text or "") if len(c) == 0 else [s.text or "" for s in c] for c in root}
        with self.lock:
            self.calls.append((method, params))
        if method in ("SecureLogon", "Logon"):
            if method == "SecureLogon" and params.get("token") != self.admin_token:
                return self._reply(h, 200, self._error(method, 100, "Invalid token"))
            info = ('<ResponseInfo xsi:type="LogonResponseInfo"><Token Token=%s/>'
                    '<Domain Name=%s/></ResponseInfo>' % (quoteattr(self.session_token),
                                                          quoteattr(params.get("domainName", "Global"))))
            return self._reply(h, 200, self._ok(method, info))
        auth = h.headers.get("Authorization", "")
        if "Token=%s" % self.session_token not in auth:
            return self._reply(h, 401, "unauthorized")
        if method == "DecryptPassword":
            try:
                value = base64.b64decode(params.get("encryptedString", ""), validate=True).decode("utf-8")
            except ValueError:
                return self._reply(h, 200, self._error(method, 100, "Cannot decrypt the string"))
            info = '<ResponseInfo xsi:type="AttributeValueInfo" Name="" Value=%s/>' % quoteattr(value)
            return self._reply(h, 200, self._ok(method, info))
        if method in ("UpdateResourceAddress", "SetAttributeValue", "SetResourceLiveStatus",
                      "WriteMessageToReservationOutput"):
            return self._reply(h, 200, self._ok(method))
        return self._reply(h, 200, self._error(method, 404, "Method %s is not supported by the stand-in" % method))


if __name__ == "__main__":
    s = StandIn(sys.argv[1] if len(sys.argv) > 1 else "127.0.9.7",
                int(sys.argv[2]) if len(sys.argv) > 2 else 8029).start()
    print(json.dumps({"host": s.host, "port": s.port, "admin_token": s.admin_token}), flush=True)
    s.thread.join()
