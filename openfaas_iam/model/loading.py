"""Load IAM objects from YAML/JSON text, validating every field.

Every problem is collected (not just the first) and located by file, document
number, `Kind/name` and field path, with what was expected, so `openfaas-iam lint`
can print them all and a function can log why it kept the last good config.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from openfaas_iam.durations import parse_duration
from openfaas_iam.errors import ConfigError, Problem
from openfaas_iam.model.actions import expand_action, suggest_action
from openfaas_iam.model.conditions import Clause, Condition, parse_operator, validate_clause_key
from openfaas_iam.model.objects import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    DEFAULT_TOKEN_EXPIRY,
    NO_PRINCIPAL,
    IamConfig,
    JwtIssuer,
    Policy,
    Role,
    Statement,
)
from openfaas_iam.model.resources import parse_resource

MAX_CONFIG_BYTES = 4 * 1024 * 1024
# A compressed configuration (gzip, or gzip+base64 text) expands to at most this: a Kubernetes
# Secret holds at most 1 MiB, and YAML of 10,000 Roles and Policies compresses about 10x; the
# bound keeps a gzip bomb from exhausting the function's memory.
MAX_EXPANDED_BYTES = 32 * 1024 * 1024
KINDS = ("JwtIssuer", "Policy", "Role")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SPEC_FIELDS = {
    "JwtIssuer": ("iss", "aud", "issInternal", "tokenExpiry"),
    "Policy": ("statement",),
    "Role": ("policy", "principal", "condition"),
}
_STATEMENT_FIELDS = ("sid", "effect", "action", "resource", "condition")


class Strings:
    """One object per distinct string, and per distinct tuple of strings, in one load.

    A parser makes a new string for every value it reads: `Allow`, a sid, an action list,
    an issuer URL in every Role that names it, a Policy's name in every Role that grants
    it. A configuration keeps them all for as long as it is in force, so the loader
    hands out the first copy of each. A table per load rather than `sys.intern`: it is
    dropped with the load, so names from an old configuration are never kept.
    """

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[object, Any] = {}

    def one(self, text: str) -> str:
        found: str = self._table.setdefault(text, text)
        return found

    def many(self, texts: Iterable[str]) -> tuple[str, ...]:
        table = self._table
        items = tuple(table.setdefault(t, t) for t in texts)
        found: tuple[str, ...] = table.setdefault(items, items)
        return found


class _Doc:
    """Collects problems for one document, prefixed with its location."""

    def __init__(self, source: str, index: int, problems: list[Problem], strings: Strings | None = None):
        self.source = source
        self.index = index
        self.obj: str | None = None
        self.problems = problems
        self.strings = strings or Strings()

    def error(self, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.source, self.index, self.obj, field, message))


def _typename(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_text(text: str, source: str) -> list[tuple[int, Any]]:
    """Split text into (document number, object) pairs; JSON or multi-document YAML.

    JSON may be one object, an array of objects, or a Kubernetes `List`. Documents
    are numbered from 1 in the order they appear.
    """
    stripped = text.lstrip()
    docs: list[Any]
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                [Problem(source, None, None, None, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")]
            ) from None
        except RecursionError:
            raise ConfigError([Problem(source, None, None, None, "invalid JSON: nested too deeply")]) from None
        docs = loaded if isinstance(loaded, list) else [loaded]
    else:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            reason = getattr(e, "problem", None) or str(e)
            raise ConfigError([Problem(source, None, None, None, f"invalid YAML{where}: {reason}")]) from None
        except RecursionError:
            raise ConfigError([Problem(source, None, None, None, "invalid YAML: nested too deeply")]) from None
    out: list[tuple[int, Any]] = []
    for n, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend((n, item) for item in doc["items"])
        else:
            out.append((n, doc))
    return out


def _string(d: _Doc, value: Any, field: str, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            d.error(field, "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        d.error(field, f"expected a non-empty string, got {_typename(value)}")
        return None
    return d.strings.one(value)


def _string_list(d: _Doc, value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        d.error(field, "is required")
        return None
    if not isinstance(value, list):
        d.error(field, f"expected a list of strings, got {_typename(value)}")
        return None
    if not value:
        d.error(field, "expected at least one entry")
        return None
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            d.error(f"{field}[{i}]", f"expected a non-empty string, got {_typename(item)}")
        else:
            out.append(item)
    return d.strings.many(out) if len(out) == len(value) else None


def _url(d: _Doc, value: Any, field: str, *, required: bool) -> str | None:
    s = _string(d, value, field, required=required)
    if s is None:
        return None
    parts = urlsplit(s)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        d.error(field, f"expected an absolute http(s) URL, got {s!r}")
        return None
    if parts.query or parts.fragment:
        d.error(field, f"an issuer URL has no query or fragment (RFC 8414 §2), got {s!r}")
        return None
    return s


def _condition_values(d: _Doc, value: Any, field: str, *, null: bool) -> tuple[str, ...] | None:
    items = value if isinstance(value, list) else [value]
    if not items:
        d.error(field, "expected at least one value")
        return None
    out: list[str] = []
    bad = False
    for i, item in enumerate(items):
        where = f"{field}[{i}]" if isinstance(value, list) else field
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, (int, float)) and not null:
            out.append(str(item))
        elif isinstance(item, str):
            out.append(item)
        else:
            d.error(where, f"expected a string, got {_typename(item)}")
            bad = True
    if bad:
        return None
    if null and any(v.lower() not in ("true", "false") for v in out):
        d.error(field, "Null takes 'true' (the claim must be absent) or 'false' (it must be present)")
        return None
    return d.strings.many(out)


def _condition(d: _Doc, value: Any, field: str) -> Condition | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        d.error(field, f"expected a mapping of operator -> {{claim: [values]}}, got {_typename(value)}")
        return None
    clauses: list[Clause] = []
    ok = True
    for op_name, keys in value.items():
        op_field = f"{field}.{op_name}"
        try:
            op = parse_operator(op_name)
        except ValueError as e:
            d.error(op_field, str(e))
            ok = False
            continue
        if not isinstance(keys, dict) or not keys:
            d.error(op_field, f"expected a mapping of claim -> [values], got {_typename(keys)}")
            ok = False
            continue
        for key, vals in keys.items():
            key_field = f"{op_field}.{key}"
            reason = validate_clause_key(key)
            if reason:
                d.error(key_field, f"invalid key {key!r}: {reason}")
                ok = False
                continue
            values = _condition_values(d, vals, key_field, null=op.base == "null")
            if values is None:
                ok = False
                continue
            clauses.append(Clause(d.strings.one(op_name), d.strings.one(key), values))
    return Condition(tuple(clauses)) if ok else None


def _unknown_fields(d: _Doc, mapping: dict[str, Any], allowed: Iterable[str], field: str) -> None:
    allowed = tuple(allowed)
    for key in mapping:
        if key not in allowed:
            d.error(
                f"{field}.{key}" if field else str(key),
                f"unknown field{_did_you_mean(str(key), allowed)}; expected one of {', '.join(allowed)}",
            )


def _issuer(d: _Doc, name: str, ns: str, spec: dict[str, Any]) -> JwtIssuer | None:
    iss = _url(d, spec.get("iss"), "spec.iss", required=True)
    aud = _string_list(d, spec.get("aud"), "spec.aud")
    internal = _url(d, spec.get("issInternal"), "spec.issInternal", required=False)
    expiry = DEFAULT_TOKEN_EXPIRY
    if spec.get("tokenExpiry") is not None:
        raw = spec["tokenExpiry"]
        try:
            expiry = parse_duration(raw)
        except ValueError as e:
            d.error("spec.tokenExpiry", str(e))
            return None
        if expiry <= 0:
            d.error("spec.tokenExpiry", f"must be positive, got {raw!r}")
            return None
    if iss is None or aud is None or (spec.get("issInternal") is not None and internal is None):
        return None
    return JwtIssuer(name, ns, iss, aud, internal, expiry)


def _statement(d: _Doc, raw: Any, field: str, sids: set[str]) -> Statement | None:
    if not isinstance(raw, dict):
        d.error(field, f"expected a statement mapping with sid, effect, action, resource, got {_typename(raw)}")
        return None
    _unknown_fields(d, raw, _STATEMENT_FIELDS, field)
    sid = _string(d, raw.get("sid"), f"{field}.sid")
    if sid is not None:
        if sid in sids:
            d.error(f"{field}.sid", f"duplicate sid {sid!r} in this policy")
        sids.add(sid)
    effect = raw.get("effect")
    if effect not in ("Allow", "Deny"):
        d.error(f"{field}.effect", f"expected 'Allow' or 'Deny', got {effect!r}")
        effect = None
    # Every bad entry of a list is reported (not only the first), so one lint run shows them all.
    actions = _string_list(d, raw.get("action"), f"{field}.action")
    if actions:
        bad = False
        for i, a in enumerate(actions):
            if a.lower() == "secret:get":
                d.error(
                    f"{field}.action[{i}]",
                    f"unknown action {a!r}: there is no Secret:Get, a secret's value can never be read through the API "
                    "(Secret:List lists names)",
                )
                bad = True
            elif not expand_action(a):
                hint = suggest_action(a)
                d.error(
                    f"{field}.action[{i}]",
                    f"unknown action {a!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + "; expected e.g. Function:Get, Secret:List, Namespace:*, System:Info or *",
                )
                bad = True
        if bad:
            actions = None
    resources = _string_list(d, raw.get("resource"), f"{field}.resource")
    if resources:
        bad = False
        for i, r in enumerate(resources):
            try:
                parse_resource(r)
            except ValueError as e:
                d.error(f"{field}.resource[{i}]", str(e))
                bad = True
        if bad:
            resources = None
    condition = _condition(d, raw.get("condition"), f"{field}.condition")
    if raw.get("condition") is not None and condition is None:
        return None
    if sid is None or effect is None or not actions or not resources:
        return None
    return Statement(sid, d.strings.one(effect), actions, resources, condition)


def _policy(d: _Doc, name: str, ns: str, spec: dict[str, Any]) -> Policy | None:
    raw = spec.get("statement")
    if raw is None:
        d.error("spec.statement", "is required: a list of statements")
        return None
    if not isinstance(raw, list) or not raw:
        d.error("spec.statement", f"expected a non-empty list of statements, got {_typename(raw)}")
        return None
    sids: set[str] = set()
    statements = [_statement(d, s, f"spec.statement[{i}]", sids) for i, s in enumerate(raw)]
    if any(s is None for s in statements):
        return None
    return Policy(name, ns, tuple(s for s in statements if s is not None))


def _role(d: _Doc, name: str, ns: str, spec: dict[str, Any]) -> Role | None:
    policies = _string_list(d, spec.get("policy"), "spec.policy")
    principal_raw = spec.get("principal")
    principal: dict[str, tuple[str, ...]] = {}
    ok = True
    if principal_raw is not None:
        if not isinstance(principal_raw, dict) or not principal_raw:
            d.error(
                "spec.principal",
                f"expected a mapping of claim -> [values] such as jwt:sub, got {_typename(principal_raw)}",
            )
            ok = False
        else:
            for key, vals in principal_raw.items():
                reason = validate_clause_key(key)
                if reason:
                    d.error(f"spec.principal.{key}", f"invalid key {key!r}: {reason}")
                    ok = False
                    continue
                values = _condition_values(d, vals, f"spec.principal.{key}", null=False)
                if values is None:
                    ok = False
                else:
                    principal[d.strings.one(key)] = values
    condition = _condition(d, spec.get("condition"), "spec.condition")
    if spec.get("condition") is not None and condition is None:
        ok = False
    if principal_raw is None and spec.get("condition") is None:
        d.error("spec", "a Role needs spec.principal or spec.condition; without either it would match every token")
        ok = False
    if not ok or policies is None:
        return None
    return Role(name, ns, policies, MappingProxyType(principal) if principal else NO_PRINCIPAL, condition)


REPORT_ONLY = "iam.openfaas.com/report-only"


def _report_only(d: _Doc, policy: Policy, annotations: Any) -> Policy:
    """A Policy tried against real traffic before it is enforced (see docs/policies.md)."""
    if not isinstance(annotations, dict) or REPORT_ONLY not in annotations:
        return policy
    value = annotations[REPORT_ONLY]
    if value not in ("true", "false"):
        d.error(f"metadata.annotations[{REPORT_ONLY!r}]", f'expected "true" or "false", got {value!r}')
        return policy
    return replace(policy, report_only=value == "true")


def parse_objects(
    docs: Iterable[tuple[int, Any]],
    source: str,
    problems: list[Problem],
    invalid: set[tuple[str, str]] | None = None,
    strings: Strings | None = None,
) -> list[tuple[_Doc, Any]]:
    """Validate each document; return the objects that are individually valid.

    `invalid` collects (kind, name) of named objects that failed, so references to
    them are reported as invalid rather than missing. `strings`: the load's table of
    shared strings (see `Strings`), so every file of one load shares one.
    """
    out: list[tuple[_Doc, Any]] = []
    strings = strings or Strings()
    for index, raw in docs:
        d = _Doc(source, index, problems, strings)
        if not isinstance(raw, dict):
            d.error(
                None,
                f"expected a Kubernetes object (a mapping with apiVersion, kind, metadata, spec), got {_typename(raw)}",
            )
            continue
        kind = raw.get("kind")
        meta = raw.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        d.obj = (
            f"{kind}/{name}"
            if isinstance(kind, str) and isinstance(name, str)
            else (f"{kind}" if isinstance(kind, str) else None)
        )
        if raw.get("apiVersion") != API_VERSION:
            d.error("apiVersion", f"expected {API_VERSION!r}, got {raw.get('apiVersion')!r}")
            continue
        if kind not in KINDS:
            d.error(
                "kind",
                f"unsupported kind {kind!r}{_did_you_mean(str(kind), KINDS)}; expected one of {', '.join(KINDS)}",
            )
            continue
        if not isinstance(meta, dict):
            d.error("metadata", f"expected a mapping with a name, got {_typename(meta)}")
            continue
        if not isinstance(name, str) or not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
            d.error("metadata.name", f"expected a lowercase DNS name (a-z, 0-9, '-', '.'), got {name!r}")
            continue
        ns = meta.get("namespace", DEFAULT_NAMESPACE)
        if not isinstance(ns, str) or not ns:
            d.error("metadata.namespace", f"expected a namespace name, got {_typename(ns)}")
            continue
        spec = raw.get("spec")
        if not isinstance(spec, dict):
            d.error("spec", f"is required: expected a mapping, got {_typename(spec)}")
            continue
        name, ns = strings.one(name), strings.one(ns)
        before = len(problems)
        _unknown_fields(d, spec, _SPEC_FIELDS[kind], "spec")
        builder = {"JwtIssuer": _issuer, "Policy": _policy, "Role": _role}[kind]
        obj = builder(d, name, ns, spec)
        if isinstance(obj, Policy):
            obj = _report_only(d, obj, meta.get("annotations"))
        if obj is not None and len(problems) == before:
            out.append((d, obj))
        elif invalid is not None:
            invalid.add((kind, name))
    return out


def build_config(
    objects: list[tuple[_Doc, Any]], problems: list[Problem], invalid: set[tuple[str, str]] | None = None
) -> IamConfig:
    """Cross-object checks: unique names, unique issuers, Role -> Policy references."""
    seen: dict[tuple[str, str], _Doc] = {}
    issuers: list[JwtIssuer] = []
    policies: list[Policy] = []
    roles: list[tuple[_Doc, Role]] = []
    seen_iss: dict[str, str] = {}
    for d, obj in objects:
        kind = type(obj).__name__
        key = (kind, obj.name)
        if key in seen:
            first = seen[key]
            # Names must be unique across namespaces too: the token's policy claim carries names only.
            d.error(
                "metadata.name",
                f"duplicate {kind} name {obj.name!r}; first defined in {first.source} document {first.index}",
            )
            continue
        seen[key] = d
        if isinstance(obj, JwtIssuer):
            if obj.iss in seen_iss:
                d.error("spec.iss", f"issuer {obj.iss!r} is already trusted by JwtIssuer/{seen_iss[obj.iss]}")
                continue
            seen_iss[obj.iss] = obj.name
            issuers.append(obj)
        elif isinstance(obj, Policy):
            policies.append(obj)
        else:
            roles.append((d, obj))
    names = {p.name for p in policies}
    good_roles: list[Role] = []
    for d, role in roles:
        missing = [(i, p) for i, p in enumerate(role.policies) if p not in names]
        for i, p in missing:
            if invalid and ("Policy", p) in invalid:
                d.error(f"spec.policy[{i}]", f"Policy {p!r} is invalid (see its own errors)")
            else:
                d.error(f"spec.policy[{i}]", f"Policy {p!r} does not exist{_did_you_mean(p, names)}")
        if not missing:
            good_roles.append(role)
    return IamConfig(tuple(issuers), tuple(policies), tuple(good_roles))


def in_document_order(problems: list[Problem], sources: Sequence[str]) -> list[Problem]:
    """Problems by file (in the order given), then document; within a document as found.

    Cross-object checks (duplicate names, missing policies) run after every document is
    read, so without this they would come after the problems of later documents.
    """
    rank = {source: i for i, source in enumerate(dict.fromkeys(sources))}
    return sorted(
        problems,
        key=lambda p: (rank.get(p.source, len(rank)), -1 if p.document is None else p.document),
    )


def _consumed(docs: list[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """The documents in order, each dropped from `docs` as it is handed out.

    So a parsed document is freed once its object is built, and the objects built after it
    reuse its memory: the load's peak, and what the process keeps of that peak after it, is
    the parse tree or the configuration rather than both (the tree of a 5 MiB JSON
    configuration is 34 MiB of Python objects)."""
    docs.reverse()
    while docs:
        yield docs.pop()


def load_texts(texts: list[tuple[str, str]]) -> IamConfig:
    """Load (source name, text) pairs into one config; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    objects: list[tuple[_Doc, Any]] = []
    invalid: set[tuple[str, str]] = set()
    strings = Strings()
    for source, text in texts:
        try:
            docs = parse_text(text, source)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        objects.extend(parse_objects(_consumed(docs), source, problems, invalid, strings))
    config = build_config(objects, problems, invalid)
    if problems:
        raise ConfigError(in_document_order(problems, [source for source, _ in texts]))
    return config


def read_source(path: str | Path) -> tuple[str, str]:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                [Problem(str(path), None, None, None, f"file is {size} bytes; the limit is {MAX_CONFIG_BYTES}")]
            )
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([Problem(str(path), None, None, None, f"cannot read: {e.strerror or e}")]) from None
    raw = expand(raw, str(path))
    try:
        return str(path), raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(str(path), None, None, None, f"not UTF-8 text (byte {e.start})")]) from None


def expand(raw: bytes, source: str) -> bytes:
    """A gzip-compressed configuration (raw, or base64 text starting `H4sI`) expanded; anything else as is.

    Why compression rather than a watched CRD for configurations beyond one Secret's
    1 MiB: see docs/architecture.md ("Large configurations").
    """
    data = raw
    if raw[:4] == b"H4sI":  # base64 of a gzip header: what `stringData` or a text pipeline carries
        try:
            data = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                [Problem(source, None, None, None, "looks like gzip+base64 but is not valid base64")]
            ) from None
    if data[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(MAX_EXPANDED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise ConfigError([Problem(source, None, None, None, f"not valid gzip: {e}")]) from None
    if len(out) > MAX_EXPANDED_BYTES:
        raise ConfigError(
            [Problem(source, None, None, None, f"expands to more than {MAX_EXPANDED_BYTES} bytes (the limit)")]
        )
    return out


def load_paths(paths: Iterable[str | Path]) -> IamConfig:
    """Load one or more files (or folders of *.yaml/*.yml/*.json) into one config.

    In a folder, policy test files (`*.test.yaml`, see `openfaas-iam test`) sit next to the
    documents they test and are not IAM documents: they are skipped.
    """
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    order: list[str] = []
    for path in paths:
        p = Path(path)
        files = (
            sorted(
                f
                for f in p.iterdir()
                if f.suffix in (".yaml", ".yml", ".json")
                and not f.name.startswith(".")
                and not f.name.endswith((".test.yaml", ".test.yml", ".test.json"))
            )
            if p.is_dir()
            else [p]
        )
        for f in files:
            order.append(str(f))
            try:
                texts.append(read_source(f))
            except ConfigError as e:
                problems.extend(e.problems)
    try:
        config = load_texts(texts)
    except ConfigError as e:
        problems.extend(e.problems)
        raise ConfigError(in_document_order(problems, order)) from None
    if problems:
        raise ConfigError(in_document_order(problems, order))
    return config


def load_mapping_documents(items: Sequence[Mapping[str, Any]], source: str) -> IamConfig:
    """Load objects already parsed (from the Kubernetes API) with the same validation."""
    problems: list[Problem] = []
    objects = parse_objects([(i, dict(x)) for i, x in enumerate(items, start=1)], source, problems)
    config = build_config(objects, problems)
    if problems:
        raise ConfigError(problems)
    return config
