"""stack.yml as faas-cli reads it: `${VAR:-default}` substitution, then YAML."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DEFAULT_NAMESPACE = "openfaas-fn"


class StackError(Exception):
    """stack.yml cannot be used; the message names the function and field."""


def substitute(text: str, env: Mapping[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset only)."""

    def repl(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value if value else default
        if op == "-":
            return value if value is not None else default
        return value or ""

    return _VAR.sub(repl, text)


@dataclass(frozen=True)
class Function:
    name: str
    lang: str
    handler: str
    image: str
    namespace: str
    environment: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def schedule(self) -> str | None:
        """The cron schedule when cron-connector should invoke this function."""
        if self.annotations.get("topic") == "cron-function":
            return self.annotations.get("schedule")
        return None


@dataclass(frozen=True)
class Stack:
    path: Path
    gateway: str
    functions: dict[str, Function]
    copy: tuple[str, ...]
    templates: tuple[str, ...]

    @property
    def root(self) -> Path:
        return self.path.parent


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackError(f"{where}: expected a mapping")
    return {str(k): "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}


def load_stack(path: str | Path, env: Mapping[str, str]) -> Stack:
    p = Path(path).resolve()
    try:
        doc = yaml.safe_load(substitute(p.read_text(), env))
    except (OSError, yaml.YAMLError) as e:
        raise StackError(f"{path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("functions"), dict):
        raise StackError(f"{path}: expected a 'functions' mapping")
    config = doc.get("configuration") or {}
    functions: dict[str, Function] = {}
    for name, raw in doc["functions"].items():
        where = f"{path}: functions.{name}"
        if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            raise StackError(f"{where}: a function name is a DNS label (a-z, 0-9, '-', at most 63)")
        if not isinstance(raw, dict) or not raw.get("handler") or not raw.get("lang"):
            raise StackError(f"{where}: needs lang and handler")
        environment: dict[str, str] = {}
        for env_file in raw.get("environment_file") or []:
            try:
                extra = yaml.safe_load(substitute((p.parent / env_file).read_text(), env)) or {}
            except (OSError, yaml.YAMLError) as e:
                raise StackError(f"{where}.environment_file: {e}") from None
            environment.update(_strings(extra.get("environment"), f"{where}.environment_file {env_file}"))
        environment.update(_strings(raw.get("environment"), f"{where}.environment"))
        functions[name] = Function(
            name=name,
            lang=str(raw["lang"]),
            handler=str(raw["handler"]),
            image=str(raw.get("image", "")),
            namespace=str(raw.get("namespace") or DEFAULT_NAMESPACE),
            environment=environment,
            secrets=tuple(str(s) for s in raw.get("secrets") or []),
            annotations=_strings(raw.get("annotations"), f"{where}.annotations"),
            labels=_strings(raw.get("labels"), f"{where}.labels"),
        )
    templates = tuple(t.get("name", "") for t in config.get("templates") or [] if isinstance(t, dict))
    return Stack(
        path=p,
        gateway=str((doc.get("provider") or {}).get("gateway", "")),
        functions=functions,
        copy=tuple(str(c) for c in config.get("copy") or []),
        templates=templates,
    )
