"""A KubeVirt stand-in on kmock (PyPI `kmock`, the Kubernetes API emulator by the author of kopf).

kmock's `KubernetesEmulator` is the API server: it stores objects, serves get/list/watch/create/
merge-patch/delete and discovery. This module adds, in kmock's own handler API (reactions
registered with `emulator[criteria] << callback`, a subclass hook on `_handle`):

* what the API server does and kmock leaves out: bearer-token authentication (401), a
  namespace-scoped "RBAC" (403 outside the token's namespaces), `uid`/`resourceVersion`/
  `generation`/`creationTimestamp`, optimistic concurrency on `metadata.resourceVersion`
  (409), 415 for patch types other than JSON merge patch;
* strict schema validation of every object a client creates or patches (the result of the
  patch) and of every subresource request body against KubeVirt's own OpenAPI schema
  (`kubevirt-swagger.json.gz`, see NOTE.md): a rejected request answers 422 `Invalid`, like an
  API server with `fieldValidation=Strict`, and is appended to the violations file the tests read;
* the KubeVirt controllers, as one reconcile loop: VirtualMachine → VirtualMachineInstance by
  `spec.runStrategy` (IP and MAC on `status.interfaces` once running), `printableStatus`,
  the `subresources.kubevirt.io` start/stop/restart and pause/unpause endpoints,
  VirtualMachineSnapshot (+Content), VirtualMachineRestore and VirtualMachineClone status
  progress. No scheduling, storage or CDI: disks are not copied (see crates/kubevirt/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import gzip
import hashlib
import json
import pathlib
import re
import ssl
import sys
import uuid
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonschema
import kmock
from kmock._internal import enums

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA_FILE = HERE / "kubevirt-swagger.json.gz"

KV = "kubevirt.io/v1"
SNAP = "snapshot.kubevirt.io/v1beta1"
CLONE = "clone.kubevirt.io/v1beta1"
SUB = "subresources.kubevirt.io"

# resource key → (kind, schema definition)
RESOURCES = {
    f"{KV}/virtualmachines": ("VirtualMachine", "v1.VirtualMachine"),
    f"{KV}/virtualmachineinstances": ("VirtualMachineInstance", "v1.VirtualMachineInstance"),
    f"{SNAP}/virtualmachinesnapshots": ("VirtualMachineSnapshot", "v1beta1.VirtualMachineSnapshot"),
    f"{SNAP}/virtualmachinesnapshotcontents": ("VirtualMachineSnapshotContent", "v1beta1.VirtualMachineSnapshotContent"),
    f"{SNAP}/virtualmachinerestores": ("VirtualMachineRestore", "v1beta1.VirtualMachineRestore"),
    f"{CLONE}/virtualmachineclones": ("VirtualMachineClone", "v1beta1.VirtualMachineClone"),
}
BODY_SCHEMAS = {"start": "v1.StartOptions", "stop": "v1.StopOptions", "restart": "v1.RestartOptions",
                "pause": "v1.PauseOptions", "unpause": "v1.UnpauseOptions"}
RUNNING_STRATEGIES = {"Always", "RerunOnFailure"}


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def res_key(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}/{resource.plural}"


class Schema:
    """KubeVirt's swagger definitions as strict JSON-schema validators (unknown fields rejected)."""

    def __init__(self, path: pathlib.Path = SCHEMA_FILE) -> None:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            doc = json.load(f)
        self.definitions = {k: self._strict(v) for k, v in doc["definitions"].items()}
        self._cache: dict[str, jsonschema.protocols.Validator] = {}

    @classmethod
    def _strict(cls, node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: cls._strict(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
            if out.pop("nullable", False) and isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [cls._strict(v) for v in node]
        return node

    def errors(self, definition: str, obj: Any) -> list[str]:
        if definition not in self._cache:
            schema = {"$ref": f"#/definitions/{definition}", "definitions": self.definitions}
            self._cache[definition] = jsonschema.Draft4Validator(schema)
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                for e in self._cache[definition].iter_errors(obj)]


class Invalid(kmock.KubernetesError):
    pass


def k8s_error(status: int, reason: str, message: str, kind: str | None = None, name: str | None = None):
    details = {"name": name, "kind": kind} if kind else {}
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


@attrs.define(kw_only=True)
class KubeVirtEmulator(kmock.KubernetesEmulator):
    token: str = ""
    namespaces: tuple[str, ...] = ("default",)
    violations_path: pathlib.Path | None = None
    schema: Schema = attrs.field(factory=Schema)
    violations: list[dict[str, Any]] = attrs.field(factory=list)
    step: float = 0.3  # seconds per controller phase
    _rv: int = attrs.field(default=1000, init=False)
    _ip: int = attrs.field(default=10, init=False)
    _ips: dict[str, str] = attrs.field(factory=dict, init=False)
    _since: dict[tuple[str, str, str], float] = attrs.field(factory=dict, init=False)
    _stop_grace: dict[tuple[str, str], float] = attrs.field(factory=dict, init=False)
    _manual_run: dict[tuple[str, str], bool] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, _) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=True, singular=kind.lower(),
                verbs={"get", "list", "watch", "create", "patch", "delete"})
        vm_sub = re.compile(rf"/apis/{SUB}/v1/namespaces/([^/]+)/virtualmachines/([^/]+)/(start|stop|restart)")
        vmi_sub = re.compile(rf"/apis/{SUB}/v1/namespaces/([^/]+)/virtualmachineinstances/([^/]+)/(pause|unpause)")
        vnc = re.compile(rf"/apis/{SUB}/v1/namespaces/([^/]+)/virtualmachineinstances/([^/]+)/vnc")
        self["put", vm_sub] << self._vm_subresource
        self["put", vmi_sub] << self._vmi_subresource
        self["get", vnc] << self._vnc
        self[f"get /apis/{SUB}/v1/version"] << {"gitVersion": "v1.9.0-emulated", "gitTreeState": "clean"}

    # ----- the API server parts kmock leaves out -------------------------------------------------

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):  # a Status like the API server's, no traceback
            return aiohttp.web.json_response({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": exc.status,
                "reason": exc.reason, "message": exc.message, "details": exc.details or {}}, status=exc.status)
        return await super()._render_error(exc)

    def _violation(self, request: kmock.Request, definition: str, errors: list[str]) -> Invalid:
        entry = {"method": getattr(request.method, "value", str(request.method)), "path": str(request.url.path), "definition": definition,
                 "errors": errors[:10]}
        self.violations.append(entry)
        if self.violations_path is not None:
            with open(self.violations_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        return Invalid(status=422, reason="Invalid",
                       message=f"{definition} is invalid: " + "; ".join(errors[:5]),
                       details={"causes": [{"message": e} for e in errors[:10]]})

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _key(resource: str, namespace: str, name: str) -> tuple[kmock.resource, str, str]:
        return (kmock.resource(resource), namespace, name)

    def _get(self, resource: str, namespace: str, name: str) -> kmock.Object | None:
        key = self._key(resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key]
        return None

    def _all(self, resource: str) -> list[tuple[str, str, kmock.Object]]:
        out = []
        for (res, ns, name), obj in list(self.objects.items()):
            if res_key(res) == resource and not obj.deleted:
                out.append((ns, name, obj))
        return out

    async def _store_patch(self, resource: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A controller write: merge-patch + resourceVersion bump + watch event."""
        obj = self._get(resource, namespace, name)
        if obj is None:
            return
        patch = copy.deepcopy(patch)
        patch.setdefault("metadata", {})["resourceVersion"] = self._next_rv()
        obj.patch(patch)
        await self._buses[kmock.resource(resource)].put({"type": "MODIFIED", "object": obj.raw})

    async def _store_create(self, resource: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        kind, _ = RESOURCES[resource]
        body["apiVersion"] = resource.rsplit("/", 1)[0]
        body["kind"] = kind
        meta = body.setdefault("metadata", {})
        meta.update({"namespace": namespace, "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                     "generation": 1, "creationTimestamp": now()})
        key = self._key(resource, namespace, meta["name"])
        if key in self.objects and self.objects[key].deleted:
            self.objects[key].create(body)
        else:
            self.objects[key] = body
        await self._buses[kmock.resource(resource)].put({"type": "ADDED", "object": body})
        return body

    async def _store_delete(self, resource: str, namespace: str, name: str) -> None:
        obj = self._get(resource, namespace, name)
        if obj is None:
            return
        raw = obj.raw
        obj.delete()
        await self._buses[kmock.resource(resource)].put({"type": "DELETED", "object": raw})

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        if path.startswith("/api") and path not in ("/api", "/apis") and not path.startswith("/apis/" + SUB + "/v1/version"):
            auth = request.headers.get("Authorization", "")
            if not self.token or auth != f"Bearer {self.token}":
                return await self._render_error(k8s_error(401, "Unauthorized", "Unauthorized"))
            if request.namespace is not None and request.namespace not in self.namespaces:
                verb = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}.get(
                    str(request.method).upper(), "get")
                plural = request.resource.plural if request.resource else "?"
                return await self._render_error(k8s_error(
                    403, "Forbidden",
                    f'{plural} is forbidden: User "system:serviceaccount:polyvisor:polyvisor" cannot {verb} '
                    f'resource "{plural}" in the namespace "{request.namespace}"'))
        try:
            self._prepare(request)
        except kmock.KubernetesError as e:
            return await self._render_error(e)
        response = await super()._handle(request)
        if request.action == enums.action.CREATE and response.status == 200 and not response.prepared:
            response.set_status(201)  # an API server answers a create with 201 Created
        return response

    def _prepare(self, request: kmock.Request) -> None:
        """Validates and completes create/patch bodies before kmock stores them."""
        if request.resource is None or request.subresource is not None and request.action != enums.action.UPDATE:
            return
        key = res_key(request.resource)
        if key not in RESOURCES:
            return
        kind, definition = RESOURCES[key]
        if request.action == enums.action.CREATE:
            body = request.data
            if not isinstance(body, dict):
                raise k8s_error(400, "BadRequest", "the request body is not a JSON object")
            errors = self.schema.errors(definition, body)
            meta = body.get("metadata") or {}
            if not meta.get("name"):
                errors.append("metadata/name: required (generateName is not emulated)")
            elif not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", meta["name"]):
                errors.append(f"metadata/name: '{meta['name']}' is not a DNS-1123 label")
            for k in ("uid", "resourceVersion", "generation", "creationTimestamp"):
                if k in meta:
                    errors.append(f"metadata/{k}: set by the server")
            if body.get("kind") not in (None, kind):
                errors.append(f"kind: expected {kind}")
            if errors:
                raise self._violation(request, definition, errors)
            ns = request.namespace or meta.get("namespace")
            existing = self._get(key, ns, meta["name"])
            if existing is not None:
                raise k8s_error(409, "AlreadyExists",
                                f'{request.resource.plural}.{request.resource.group} "{meta["name"]}" already exists',
                                kind=request.resource.plural, name=meta["name"])
            body["apiVersion"] = f"{request.resource.group}/{request.resource.version}"
            body["kind"] = kind
            meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                         "generation": 1, "creationTimestamp": now()})
            body["metadata"] = meta
        elif request.action == enums.action.UPDATE:
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype != "application/merge-patch+json":
                raise k8s_error(415, "UnsupportedMediaType",
                                f"the emulator only accepts application/merge-patch+json, not {ctype or 'none'}")
            if request.subresource is not None:
                raise k8s_error(404, "NotFound", f"subresource {request.subresource} is not emulated")
            obj = self._get(key, request.namespace, request.name)
            if obj is None:
                raise k8s_error(404, "NotFound", f'{request.resource.plural}.{request.resource.group} '
                                f'"{request.name}" not found', kind=request.resource.plural, name=request.name)
            patch = request.data
            if not isinstance(patch, dict):
                raise k8s_error(400, "BadRequest", "the merge patch is not a JSON object")
            want_rv = (patch.get("metadata") or {}).get("resourceVersion")
            current = obj.raw
            if want_rv is not None and want_rv != current["metadata"].get("resourceVersion"):
                raise k8s_error(409, "Conflict",
                                f'Operation cannot be fulfilled on {request.resource.plural}.{request.resource.group} '
                                f'"{request.name}": the object has been modified; please apply your changes to the '
                                f'latest version and try again', kind=request.resource.plural, name=request.name)
            result = merge_patch(copy.deepcopy(current), patch)
            errors = self.schema.errors(definition, result)
            for k in ("uid", "namespace", "name", "creationTimestamp", "generation"):
                if (patch.get("metadata") or {}).get(k, current["metadata"].get(k)) != current["metadata"].get(k):
                    errors.append(f"metadata/{k}: immutable")
            if errors:
                raise self._violation(request, definition, errors)
            meta = patch.setdefault("metadata", {})
            meta["resourceVersion"] = self._next_rv()
            if "spec" in patch:
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1

    # ----- subresources ---------------------------------------------------------------------------

    def _body(self, request: kmock.Request, action: str) -> dict[str, Any]:
        body = request.data if isinstance(request.data, dict) else {}
        if request.body.strip() and not isinstance(request.data, dict):
            raise k8s_error(400, "BadRequest", "the request body is not a JSON object")
        errors = self.schema.errors(BODY_SCHEMAS[action], body)
        if errors:
            raise self._violation(request, BODY_SCHEMAS[action], errors)
        return body

    async def _vm_subresource(self, request: kmock.Request) -> Any:
        m = re.fullmatch(rf"/apis/{SUB}/v1/namespaces/([^/]+)/virtualmachines/([^/]+)/(start|stop|restart)",
                         request.url.path)
        ns, name, action = m.groups()
        body = self._body(request, action)
        vm = self._get(f"{KV}/virtualmachines", ns, name)
        if vm is None:
            raise k8s_error(404, "NotFound", f'virtualmachines.kubevirt.io "{name}" not found',
                            kind="virtualmachines", name=name)
        strategy = vm.raw["spec"].get("runStrategy") or ("Always" if vm.raw["spec"].get("running") else "Halted")
        vmi = self._get(f"{KV}/virtualmachineinstances", ns, name)
        running = vmi is not None
        if action == "start":
            if running or (strategy in RUNNING_STRATEGIES):
                raise k8s_error(409, "Conflict", "Operation cannot be fulfilled: VM is already running")
            if strategy == "Manual":
                self._manual_run[(ns, name)] = True
            else:
                await self._store_patch(f"{KV}/virtualmachines", ns, name, {"spec": {"runStrategy": "Always"}})
        elif action == "stop":
            if not running and strategy not in RUNNING_STRATEGIES:
                raise k8s_error(409, "Conflict", "Operation cannot be fulfilled: VM is not running")
            grace = body.get("gracePeriod")
            if grace is None:
                grace = vm.raw["spec"]["template"].get("spec", {}).get("terminationGracePeriodSeconds", 180)
            self._stop_grace[(ns, name)] = float(grace)
            self._manual_run[(ns, name)] = False
            if strategy != "Manual":
                await self._store_patch(f"{KV}/virtualmachines", ns, name, {"spec": {"runStrategy": "Halted"}})
        else:  # restart
            if not running:
                raise k8s_error(409, "Conflict", "Operation cannot be fulfilled: VM is not running")
            await self._store_delete(f"{KV}/virtualmachineinstances", ns, name)
        return b""

    async def _vmi_subresource(self, request: kmock.Request) -> Any:
        m = re.fullmatch(rf"/apis/{SUB}/v1/namespaces/([^/]+)/virtualmachineinstances/([^/]+)/(pause|unpause)",
                         request.url.path)
        ns, name, action = m.groups()
        self._body(request, action)
        vmi = self._get(f"{KV}/virtualmachineinstances", ns, name)
        if vmi is None:
            raise k8s_error(404, "NotFound", f'virtualmachineinstances.kubevirt.io "{name}" not found',
                            kind="virtualmachineinstances", name=name)
        status = vmi.raw.get("status") or {}
        paused = any(c.get("type") == "Paused" and c.get("status") == "True" for c in status.get("conditions", []))
        if status.get("phase") != "Running":
            raise k8s_error(409, "Conflict", f"VMI is not running (phase {status.get('phase')})")
        if action == "pause" and paused:
            raise k8s_error(409, "Conflict", "VMI is already paused")
        if action == "unpause" and not paused:
            raise k8s_error(409, "Conflict", "VMI is not paused")
        conds = [c for c in status.get("conditions", []) if c.get("type") != "Paused"]
        if action == "pause":
            conds.append({"type": "Paused", "status": "True", "reason": "PausedByUser",
                          "lastTransitionTime": now()})
        await self._store_patch(f"{KV}/virtualmachineinstances", ns, name, {"status": {"conditions": conds}})
        return b""

    async def _vnc(self, request: kmock.Request) -> Any:
        raise k8s_error(400, "BadRequest", "the VNC subresource needs a websocket upgrade (not emulated)")

    # ----- the controllers --------------------------------------------------------------------------

    def _age(self, key: tuple[str, str, str]) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() - self._since.setdefault(key, loop.time())

    def _ip_for(self, uid: str) -> str:
        if uid not in self._ips:
            self._ip += 1
            self._ips[uid] = f"10.244.{self._ip // 250}.{self._ip % 250 + 2}"
        return self._ips[uid]

    async def reconcile_forever(self) -> None:
        while True:
            try:
                async with self._lock:
                    await self.reconcile()
            except Exception as e:  # a controller bug must be visible, not kill the loop
                print(f"reconcile failed: {e!r}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.2)

    async def reconcile(self) -> None:
        await self._reconcile_vms()
        await self._reconcile_snapshots()
        await self._reconcile_restores()
        await self._reconcile_clones()

    async def _reconcile_vms(self) -> None:
        vms = {(ns, name): obj for ns, name, obj in self._all(f"{KV}/virtualmachines")}
        vmis = {(ns, name): obj for ns, name, obj in self._all(f"{KV}/virtualmachineinstances")}
        for (ns, name), vmi in vmis.items():  # garbage collection of VMIs whose VM is gone
            if (ns, name) not in vms:
                await self._store_delete(f"{KV}/virtualmachineinstances", ns, name)
        for (ns, name), obj in vms.items():
            vm = obj.raw
            spec = vm["spec"]
            strategy = spec.get("runStrategy") or ("Always" if spec.get("running") else "Halted")
            want = strategy in RUNNING_STRATEGIES or (strategy in ("Manual", "Once") and self._manual_run.get((ns, name)))
            vmi = vmis.get((ns, name))
            printable = "Stopped"
            if want and vmi is None:
                self._since.pop(("vmi", ns, name), None)
                self._stop_grace.pop((ns, name), None)
                tmpl = copy.deepcopy(spec["template"])
                body = {"metadata": {"name": name, "labels": (tmpl.get("metadata") or {}).get("labels", {}),
                                     "ownerReferences": [{"apiVersion": KV, "kind": "VirtualMachine", "name": name,
                                                          "uid": vm["metadata"]["uid"], "controller": True,
                                                          "blockOwnerDeletion": True}]},
                        "spec": tmpl.get("spec", {}), "status": {"phase": "Scheduling"}}
                await self._store_create(f"{KV}/virtualmachineinstances", ns, body)
                printable = "Starting"
            elif vmi is not None:
                status = vmi.raw.get("status") or {}
                phase = status.get("phase")
                if not want:
                    grace = self._stop_grace.get((ns, name), 0.0)
                    if self._age(("stop", ns, name)) >= min(grace, 2.0) * 0.5 + self.step:
                        await self._store_delete(f"{KV}/virtualmachineinstances", ns, name)
                        self._since.pop(("stop", ns, name), None)
                        printable = "Stopped"
                    else:
                        printable = "Stopping"
                elif phase == "Scheduling" and self._age(("vmi", ns, name)) >= self.step:
                    await self._store_patch(f"{KV}/virtualmachineinstances", ns, name, {"status": {
                        "phase": "Scheduled", "nodeName": "kmock-node-1"}})
                    printable = "Starting"
                elif phase == "Scheduled" and self._age(("vmi", ns, name)) >= 2 * self.step:
                    ifaces = []
                    for i, iface in enumerate((vmi.raw["spec"].get("domain", {}).get("devices", {})
                                               .get("interfaces") or [{"name": "default"}])):
                        mac = iface.get("macAddress") or mac_for(vm["metadata"]["uid"], i)
                        ip = self._ip_for(vm["metadata"]["uid"] + str(i))
                        ifaces.append({"name": iface.get("name", f"nic{i}"), "interfaceName": f"eth{i}",
                                       "mac": mac.lower(), "ipAddress": ip, "ipAddresses": [ip],
                                       "infoSource": "domain, guest-agent"})
                    await self._store_patch(f"{KV}/virtualmachineinstances", ns, name, {"status": {
                        "phase": "Running", "interfaces": ifaces,
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}]}})
                    printable = "Running"
                elif phase == "Running":
                    paused = any(c.get("type") == "Paused" and c.get("status") == "True"
                                 for c in status.get("conditions", []))
                    printable = "Paused" if paused else "Running"
                else:
                    printable = "Starting"
            ready = printable in ("Running", "Paused")
            gen = vm["metadata"].get("generation", 1)
            want_status = {"printableStatus": printable, "ready": ready, "created": vmi is not None or want,
                           "runStrategy": strategy, "observedGeneration": gen, "desiredGeneration": gen,
                           "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
            if vm.get("status") != want_status:
                await self._store_patch(f"{KV}/virtualmachines", ns, name, {"status": want_status})

    async def _reconcile_snapshots(self) -> None:
        contents = {(ns, name) for ns, name, _ in self._all(f"{SNAP}/virtualmachinesnapshotcontents")}
        snaps = {}
        for ns, name, obj in self._all(f"{SNAP}/virtualmachinesnapshots"):
            snap = obj.raw
            snaps[(ns, name)] = snap
            status = snap.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            src = snap["spec"]["source"]
            vm = self._get(f"{KV}/virtualmachines", ns, src["name"]) if src.get("kind") == "VirtualMachine" else None
            if vm is None:
                await self._store_patch(f"{SNAP}/virtualmachinesnapshots", ns, name, {"status": {
                    "phase": "Failed", "readyToUse": False,
                    "error": {"message": f"source {src.get('kind')}/{src.get('name')} not found", "time": now()}}})
                continue
            if not status.get("phase"):
                await self._store_patch(f"{SNAP}/virtualmachinesnapshots", ns, name, {"status": {
                    "phase": "InProgress", "readyToUse": False, "sourceUID": vm.raw["metadata"]["uid"],
                    "conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}]}})
                continue
            if self._age(("snap", ns, name)) < self.step:
                continue
            content_name = f"vmsnapshot-content-{snap['metadata']['uid']}"
            vm_raw = vm.raw
            await self._store_create(f"{SNAP}/virtualmachinesnapshotcontents", ns, {
                "metadata": {"name": content_name},
                "spec": {"virtualMachineSnapshotName": name, "source": {"virtualMachine": {
                    "metadata": {"name": vm_raw["metadata"]["name"],
                                 "labels": vm_raw["metadata"].get("labels", {}),
                                 "annotations": vm_raw["metadata"].get("annotations", {})},
                    "spec": copy.deepcopy(vm_raw["spec"])}}},
                "status": {"readyToUse": True, "creationTime": now()}})
            await self._store_patch(f"{SNAP}/virtualmachinesnapshots", ns, name, {"status": {
                "phase": "Succeeded", "readyToUse": True, "creationTime": now(),
                "virtualMachineSnapshotContentName": content_name,
                "conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]}})
        for ns, name in contents:  # contents follow their snapshot (deletionPolicy: delete)
            content = self._get(f"{SNAP}/virtualmachinesnapshotcontents", ns, name)
            if (ns, content.raw["spec"]["virtualMachineSnapshotName"]) not in snaps:
                await self._store_delete(f"{SNAP}/virtualmachinesnapshotcontents", ns, name)

    def _content_of(self, ns: str, snapshot: str) -> dict[str, Any] | None:
        snap = self._get(f"{SNAP}/virtualmachinesnapshots", ns, snapshot)
        if snap is None or not (snap.raw.get("status") or {}).get("readyToUse"):
            return None
        content = self._get(f"{SNAP}/virtualmachinesnapshotcontents", ns,
                            snap.raw["status"]["virtualMachineSnapshotContentName"])
        return None if content is None else content.raw["spec"]["source"]["virtualMachine"]

    async def _reconcile_restores(self) -> None:
        for ns, name, obj in self._all(f"{SNAP}/virtualmachinerestores"):
            r = obj.raw
            if (r.get("status") or {}).get("complete") is True or any(
                    c.get("type") == "Failure" for c in (r.get("status") or {}).get("conditions", [])):
                continue
            target = r["spec"]["target"]["name"]
            vm = self._get(f"{KV}/virtualmachines", ns, target)
            content = self._content_of(ns, r["spec"]["virtualMachineSnapshotName"])
            if vm is None or content is None:
                await self._store_patch(f"{SNAP}/virtualmachinerestores", ns, name, {"status": {
                    "complete": False, "conditions": [{"type": "Failure", "status": "True",
                                                       "reason": "snapshot or target VM not found"}]}})
                continue
            strategy = vm.raw["spec"].get("runStrategy")
            running = self._get(f"{KV}/virtualmachineinstances", ns, target) is not None
            if strategy in RUNNING_STRATEGIES or running:
                if r["spec"].get("targetReadinessPolicy") == "StopTarget":
                    if strategy != "Halted":
                        self._stop_grace[(ns, target)] = 0.0
                        await self._store_patch(f"{KV}/virtualmachines", ns, target, {"spec": {"runStrategy": "Halted"}})
                    await self._store_patch(f"{SNAP}/virtualmachinerestores", ns, name, {"status": {
                        "complete": False, "conditions": [{"type": "Progressing", "status": "True",
                                                           "reason": "stopping the target"}]}})
                else:
                    await self._store_patch(f"{SNAP}/virtualmachinerestores", ns, name, {"status": {
                        "complete": False, "conditions": [{"type": "Ready", "status": "False",
                                                           "reason": "VirtualMachine is running"}]}})
                continue
            spec = copy.deepcopy(content["spec"])
            spec["runStrategy"] = "Halted"
            spec.pop("running", None)
            vm.patch({"spec": None})
            await self._store_patch(f"{KV}/virtualmachines", ns, target, {
                "spec": spec, "metadata": {"generation": int(vm.raw["metadata"].get("generation", 1)) + 1}})
            await self._store_patch(f"{SNAP}/virtualmachinerestores", ns, name, {"status": {
                "complete": True, "restoreTime": now(),
                "conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]}})

    async def _reconcile_clones(self) -> None:
        for ns, name, obj in self._all(f"{CLONE}/virtualmachineclones"):
            c = obj.raw
            status = c.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            if not status.get("phase"):
                await self._store_patch(f"{CLONE}/virtualmachineclones", ns, name, {"status": {
                    "phase": "SnapshotInProgress", "creationTime": now()}})
                continue
            if self._age(("clone", ns, name)) < self.step:
                continue
            spec = c["spec"]
            src = spec["source"]
            if src.get("kind") == "VirtualMachine":
                vm = self._get(f"{KV}/virtualmachines", ns, src["name"])
                source = None if vm is None else vm.raw
            elif src.get("kind") == "VirtualMachineSnapshot":
                source = self._content_of(ns, src["name"])
            else:
                source = None
            target = (spec.get("target") or {}).get("name") or f"clone-{c['metadata']['uid'][:8]}"

            def fail(reason: str) -> dict[str, Any]:
                return {"status": {"phase": "Failed", "conditions": [
                    {"type": "Ready", "status": "False", "reason": reason}]}}

            if source is None:
                await self._store_patch(f"{CLONE}/virtualmachineclones", ns, name, fail("source not found"))
                continue
            if self._get(f"{KV}/virtualmachines", ns, target) is not None:
                await self._store_patch(f"{CLONE}/virtualmachineclones", ns, name, fail("target already exists"))
                continue
            meta = source.get("metadata") or {}
            new = {"apiVersion": KV, "kind": "VirtualMachine",
                   "metadata": {"name": target,
                                "labels": filtered(meta.get("labels") or {}, spec.get("labelFilters")),
                                "annotations": filtered(meta.get("annotations") or {}, spec.get("annotationFilters"))},
                   "spec": copy.deepcopy(source["spec"])}
            for i, iface in enumerate(new["spec"]["template"].get("spec", {}).get("domain", {})
                                      .get("devices", {}).get("interfaces") or []):
                wanted = (spec.get("newMacAddresses") or {}).get(iface.get("name"))
                if wanted:
                    iface["macAddress"] = wanted
                elif "macAddress" in iface:  # a fixed MAC is never copied to the clone
                    iface["macAddress"] = mac_for(c["metadata"]["uid"], i)
            try:
                new = jsonpatch.apply_patch(new, [json.loads(p) for p in spec.get("patches") or []])
            except Exception as e:
                await self._store_patch(f"{CLONE}/virtualmachineclones", ns, name, fail(f"bad patch: {e}"))
                continue
            errors = self.schema.errors("v1.VirtualMachine", new)
            if errors:
                entry = {"method": "CLONE", "path": f"{ns}/{name}", "definition": "v1.VirtualMachine",
                         "errors": errors[:10]}
                self.violations.append(entry)
                if self.violations_path is not None:
                    with open(self.violations_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(entry) + "\n")
                await self._store_patch(f"{CLONE}/virtualmachineclones", ns, name, fail("target is invalid"))
                continue
            new["metadata"].pop("namespace", None)
            await self._store_create(f"{KV}/virtualmachines", ns, new)
            await self._store_patch(f"{CLONE}/virtualmachineclones", ns, name, {"status": {
                "phase": "Succeeded", "targetName": target,
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "Progressing", "status": "False"}]}})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def filtered(values: dict[str, str], filters: list[str] | None) -> dict[str, str]:
    """KubeVirt clone label/annotation filters: `*` / `prefix*` include, `!…` exclude; default all."""
    if not filters:
        return dict(values)
    out = {}
    for k, v in values.items():
        keep = False
        for f in filters:
            neg = f.startswith("!")
            pat = f[1:] if neg else f
            hit = pat == "*" or (pat.endswith("*") and k.startswith(pat[:-1])) or k == pat
            if hit:
                keep = not neg
        if keep:
            out[k] = v
    return out


def mac_for(seed: str, i: int) -> str:
    h = hashlib.sha256(f"{seed}/{i}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


async def seed(emulator: KubeVirtEmulator, namespace: str, vms: list[dict[str, Any]]) -> None:
    for vm in vms:
        errors = emulator.schema.errors("v1.VirtualMachine", vm)
        if errors:
            raise SystemExit(f"seed VM {vm.get('metadata', {}).get('name')} is invalid: {errors}")
        await emulator._store_create(f"{KV}/virtualmachines", namespace, vm)


def tls_context(certdir: pathlib.Path, host: str) -> tuple[ssl.SSLContext, str, str]:
    """A private CA and a server certificate for `host` (made by openssl at first start), as a
    cluster's API server has; returns the context, the CA file and the server cert's SHA-256 pin."""
    import subprocess
    certdir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = certdir / "ca.crt", certdir / "ca.key"
    cert, key = certdir / "apiserver.crt", certdir / "apiserver.key"

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    if not (ca.exists() and cert.exists() and key.exists()):
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=kmock-kubevirt-ca",
             "-keyout", str(ca_key), "-out", str(ca))
        csr = certdir / "apiserver.csr"
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver", "-keyout", str(key), "-out", str(csr))
        ext = certdir / "ext.cnf"
        ext.write_text(f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                       f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{host},DNS:localhost\n")
        ossl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "3650", "-extfile", str(ext), "-out", str(cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    fp = hashlib.sha256(der).hexdigest().upper()
    return ctx, str(ca), ":".join(fp[i:i + 2] for i in range(0, 64, 2))


async def serve(args: argparse.Namespace) -> None:
    violations = pathlib.Path(args.violations) if args.violations else None
    if violations is not None:
        violations.touch()
    emulator = KubeVirtEmulator(token=args.token, namespaces=tuple(args.namespace), violations_path=violations)
    async with emulator:
        if args.seed:
            data = json.loads(pathlib.Path(args.seed).read_text())
            for ns, vms in data.items():
                await seed(emulator, ns, vms)
        controller = asyncio.create_task(emulator.reconcile_forever())
        server = aiohttp.web.Server(emulator)
        runner = aiohttp.web.ServerRunner(server, handle_signals=True)
        await runner.setup()
        ready: dict[str, Any] = {}
        if args.certdir:
            ctx, ca, fp = tls_context(pathlib.Path(args.certdir), args.host)
            site = aiohttp.web.TCPSite(runner, args.host, args.port, ssl_context=ctx)
            ready.update(ca_file=ca, fingerprint=fp)
            scheme = "https"
        else:
            site = aiohttp.web.TCPSite(runner, args.host, args.port)
            scheme = "http"
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # the port actually bound (0 = any)
        ready["listening"] = f"{scheme}://{args.host}:{port}"
        print(json.dumps(ready), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            controller.cancel()
            await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--certdir", help="serve TLS with a self-signed certificate kept here")
    p.add_argument("--token", required=True, help="the bearer token clients must send")
    p.add_argument("--namespace", action="append", default=[], help="namespaces the token may use")
    p.add_argument("--seed", help="JSON file {namespace: [VirtualMachine, ...]} created at start")
    p.add_argument("--violations", help="append schema violations (JSON lines) to this file")
    args = p.parse_args()
    if not args.namespace:
        args.namespace = ["default"]
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
