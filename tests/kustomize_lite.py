"""Render deploy/'s kustomizations in Python, for the tests, when no `kubectl` is on PATH.

Why not a kustomize package: none that installs from the registries here renders v5
kustomizations (the PyPI `kustomize` is an unrelated 2024 wrapper), and `kubectl kustomize`
is the reference anyway. So this reads only what deploy/ uses, and the test compares it with
`kubectl kustomize` whenever kubectl is present, so it cannot drift unnoticed:

- `resources:` files (YAML streams, concatenated) and folders (kustomizations, recursively);
- `components:` folders (kind Component): their resources and patches apply to the result;
- `patches:` whose patch is a strategic-merge `$patch: delete` of one object (how the
  gateway-api component removes the base's Ingresses), or, with a `target` (kind, name),
  `$patch: delete` or a list of JSON 6902 `replace` ops (how scripts/install.sh's overlay
  sets the hosts); anything else is refused, naming the patch;
- `labels: [{pairs: ...}]` without selectors or templates: added to each object's metadata.labels.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "labels"}


class RenderError(Exception):
    """A kustomization this renderer cannot read, naming the file and the field."""


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


def _read_kustomization(folder: Path) -> Obj:
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{folder}: no kustomization.yaml")
    doc = yaml.safe_load(path.read_text()) or {}
    unknown = set(doc) - KNOWN_FIELDS
    if unknown:
        raise RenderError(f"{path}: fields {sorted(unknown)} are not supported by tests/kustomize_lite.py")
    return doc


def _apply(doc: Obj, where: Path, objects: list[Obj]) -> list[Obj]:
    for i, entry in enumerate(doc.get("patches") or []):
        at = f"{where}/kustomization.yaml: patches[{i}]"
        patch = yaml.safe_load(entry.get("patch", "")) if isinstance(entry, dict) else None
        target = entry.get("target") or {}
        chosen = [
            o
            for o in objects
            if target.get("kind") in (None, o.get("kind"))
            and target.get("name") in (None, (o.get("metadata") or {}).get("name"))
        ]
        if isinstance(patch, dict) and patch.get("$patch") == "delete":
            gone = {_key(o) for o in chosen} if target else {_key({k: v for k, v in patch.items() if k != "$patch"})}
            if not gone & {_key(o) for o in objects}:
                raise RenderError(f"{at}: no object {sorted(gone)} to delete")
            objects = [o for o in objects if _key(o) not in gone]
        elif isinstance(patch, list) and target:
            for obj in chosen:
                for op in patch:
                    _replace(obj, op, at)
        else:
            raise RenderError(f"{at}: only `$patch: delete` and JSON 6902 `replace` patches are supported")
    for i, entry in enumerate(doc.get("labels") or []):
        if entry.get("includeSelectors") or entry.get("includeTemplates") or entry.get("fields"):
            raise RenderError(f"{where}/kustomization.yaml: labels[{i}]: only plain `pairs` are supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry.get("pairs") or {})
    return objects


def _replace(obj: Obj, op: Obj, at: str) -> None:
    """A JSON 6902 `replace` (RFC 6901 path, ~1 for /): the only op the install's overlay uses."""
    if op.get("op") != "replace":
        raise RenderError(f"{at}: op {op.get('op')!r} is not supported (only replace)")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    node: Any = obj
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = op["value"]
    elif last in node:
        node[last] = op["value"]
    else:
        raise RenderError(f"{at}: replace {op['path']}: no such field")


def render(folder: Path) -> list[Obj]:
    """The objects `kubectl kustomize folder` prints, in resource order (kubectl sorts by kind)."""
    folder = folder.resolve()
    doc = _read_kustomization(folder)
    objects: list[Obj] = []
    for i, name in enumerate(doc.get("resources") or []):
        target = (folder / name).resolve()
        if target.is_dir():
            objects += render(target)
        elif target.is_file():
            objects += [copy.deepcopy(d) for d in yaml.safe_load_all(target.read_text()) if d]
        else:
            raise RenderError(f"{folder}/kustomization.yaml: resources[{i}]: {name} does not exist")
    for i, name in enumerate(doc.get("components") or []):
        component = (folder / name).resolve()
        cdoc = _read_kustomization(component)
        if cdoc.get("kind") != "Component":
            raise RenderError(f"{folder}/kustomization.yaml: components[{i}]: {name} is not a kind: Component")
        for r in cdoc.get("resources") or []:
            objects += [copy.deepcopy(d) for d in yaml.safe_load_all((component / r).read_text()) if d]
        objects = _apply(cdoc, component, objects)
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        if _key(obj) in seen:
            raise RenderError(f"{folder}: {_key(obj)} is defined twice")
        seen.add(_key(obj))
    return _apply(doc, folder, objects)


def overlay(where: Path, base: Path, components: list[Path]) -> Path:
    """Write an overlay at `where` using `base` and `components` by relative path (kustomize refuses absolute ones)."""
    import os

    where.mkdir(parents=True, exist_ok=True)
    rel = [os.path.relpath(p.resolve(), where.resolve()) for p in components]
    doc = {"resources": [os.path.relpath(base.resolve(), where.resolve())], "components": rel}
    (where / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    return where
