"""The official Morpheus OpenAPI description (API 8.0.7), loaded from the unmodified tarball
kept beside this file, and a validator for requests and responses against it.

The description is split over ~1,000 YAML/JSON files joined by relative `$ref`s; `load()`
unpacks the tarball into a temporary directory and inlines references on demand (a
reference cycle is cut with an empty schema). Schemas are checked with the maintained
`openapi-schema-validator` (pinned in scripts/ci/requirements.txt) in its OpenAPI 3.0
dialect: the file says `openapi: 3.1.0` but uses 3.0's `nullable: true` throughout, which
3.1 validators ignore (the description's own examples would then fail).
"""

import copy
import json
import os
import re
import tarfile
import tempfile

import yaml
from openapi_schema_validator import OAS30Validator

HERE = os.path.dirname(os.path.abspath(__file__))
TARBALL = os.path.join(HERE, "morpheus-openapi-8.0.7.tar.gz")


class Spec:
    def __init__(self, root):
        self.root = root
        self._files = {}
        doc = self._file(os.path.join(root, "openapi.yaml"))
        self.version = doc["info"]["version"]
        self.paths = []
        for template, item in doc["paths"].items():
            rx = "^" + re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(template)) + "$"
            names = re.findall(r"\{([^/]+?)\}", template)
            self.paths.append((template, re.compile(rx), names, item))
        # Literal segments win over placeholders (`/api/instances/stats` before `/{id}`).
        self.paths.sort(key=lambda p: -len(re.sub(r"\{[^/]+?\}", "", p[0])))
        self._ops = {}

    def _file(self, path):
        path = os.path.normpath(path)
        if path not in self._files:
            with open(path, encoding="utf-8") as f:
                self._files[path] = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
        return self._files[path]

    def resolve(self, node, base, stack=()):
        """`node` with every `$ref` (relative to file `base`) inlined."""
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                file_part, _, frag = ref.partition("#")
                target = os.path.normpath(os.path.join(os.path.dirname(base), file_part)) if file_part else base
                key = (target, frag)
                if key in stack or len(stack) > 40:
                    return {}
                value = self._file(target)
                for seg in [s for s in frag.split("/") if s]:
                    value = value[seg.replace("~1", "/").replace("~0", "~")]
                out = self.resolve(value, target, stack + (key,))
                if isinstance(out, dict) and len(node) > 1:
                    out = dict(out)
                    out.update({k: self.resolve(v, base, stack) for k, v in node.items() if k != "$ref"})
                return out
            return {k: self.resolve(v, base, stack) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, base, stack) for v in node]
        return node

    def match(self, path):
        """(template, {param: value}, path item) for a concrete path, or None."""
        for template, rx, names, item in self.paths:
            m = rx.match(path)
            if m:
                return template, dict(zip(names, m.groups())), item
        return None

    def operation(self, template, method):
        key = (template, method)
        if key not in self._ops:
            item = next(p[3] for p in self.paths if p[0] == template)
            base = os.path.join(self.root, "openapi.yaml")
            if isinstance(item, dict) and "$ref" in item:
                base = os.path.normpath(os.path.join(self.root, item["$ref"]))
                item = self._file(base)
            op = item.get(method.lower()) if isinstance(item, dict) else None
            self._ops[key] = self.resolve(op, base) if op is not None else None
        return self._ops[key]

    def example(self, rel):
        """A request/response example file of the description (components/examples/<rel>)."""
        return copy.deepcopy(self._file(os.path.join(self.root, "components", "examples", rel)))


def load(tmp_parent=None):
    d = tempfile.mkdtemp(prefix="morpheus-openapi-", dir=tmp_parent)
    with tarfile.open(TARBALL) as t:
        t.extractall(d, filter="data")
    root = d if os.path.exists(os.path.join(d, "openapi.yaml")) else os.path.join(d, os.listdir(d)[0])
    return Spec(root)


def _errors(schema, value):
    return [
        "%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(root)", e.message)
        for e in OAS30Validator(schema).iter_errors(value)
    ][:5]


def _coerce(raw, schema):
    t = (schema or {}).get("type")
    try:
        if t == "integer":
            return int(raw)
        if t == "number":
            return float(raw)
        if t == "boolean":
            return {"true": True, "false": False}[raw.lower()]
    except (ValueError, KeyError):
        return raw
    if t == "array":
        return [_coerce(raw, schema.get("items"))]
    return raw


def check_request(spec, method, path, query, body, content_type):
    """Problems with a request (empty = it is one the description allows). `query` maps
    names to lists of values; `body` is the parsed JSON (or form dict) or None."""
    m = spec.match(path)
    if m is None:
        return None, ["unknown path %s" % path]
    template, params, _ = m
    op = spec.operation(template, method)
    if op is None:
        return template, ["%s is not an operation of %s" % (method, template)]
    problems = []
    declared = {}
    for p in op.get("parameters") or []:
        declared[(p.get("in"), p.get("name"))] = p
    for (where, name), p in declared.items():
        schema = p.get("schema") or {}
        if where == "path":
            problems += ["path %s: %s" % (name, e) for e in _errors(schema, _coerce(params.get(name, ""), schema))]
        elif where == "query":
            if name not in query:
                if p.get("required"):
                    problems.append("missing required query parameter %s" % name)
                continue
            for raw in query[name]:
                problems += ["query %s: %s" % (name, e) for e in _errors(schema, _coerce(raw, schema))]
    for name in query:
        if ("query", name) not in declared:
            problems.append("query parameter %s is not declared for %s %s" % (name, method, template))
    rb = op.get("requestBody")
    if body is not None:
        if not rb:
            problems.append("%s %s takes no request body" % (method, template))
        else:
            media = (rb.get("content") or {}).get(content_type)
            if media is None:
                problems.append("content type %s is not accepted by %s %s" % (content_type, method, template))
            else:
                problems += ["body %s" % e for e in _errors(media.get("schema") or {}, body)]
    elif rb and rb.get("required"):
        problems.append("%s %s requires a body" % (method, template))
    return template, problems


def check_response(spec, template, method, status, body):
    """Problems with a JSON response we are about to send."""
    op = spec.operation(template, method)
    if op is None:
        return []
    responses = op.get("responses") or {}
    r = responses.get(str(status)) or responses.get("%dXX" % (status // 100)) or responses.get("default")
    if r is None:
        return ["status %d is not a documented response of %s %s" % (status, method, template)]
    media = (r.get("content") or {}).get("application/json")
    if media is None:
        return [] if body is None else ["%s %s %d documents no JSON body" % (method, template, status)]
    return ["response %s" % e for e in _errors(media.get("schema") or {}, body)]
