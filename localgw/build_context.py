"""Build contexts laid out exactly as `faas-cli build --shrinkwrap` writes them.

`build/<fn>/` holds the template's files; the handler folder is overlaid on the
template's `function/`; every `configuration.copy` path lands inside `function/`.
A function started from this folder alone proves the image would work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .stack import Function, Stack, StackError

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "node_modules", ".DS_Store")


def assemble(stack: Stack, fn: Function, build_dir: Path, template_root: Path | None = None) -> Path:
    root = stack.root
    template = (template_root or root / "template") / fn.lang
    if not (template / "template.yml").is_file():
        raise StackError(f"functions.{fn.name}.lang: template {fn.lang!r} not found at {template}")
    handler = (root / fn.handler).resolve()
    if not handler.is_dir():
        raise StackError(f"functions.{fn.name}.handler: {fn.handler} is not a folder")
    out = build_dir / fn.name
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(template, out, ignore=_IGNORE)
    shutil.copytree(handler, out / "function", ignore=_IGNORE, dirs_exist_ok=True)
    for rel in stack.copy:
        src = (root / rel).resolve()
        if root.resolve() not in src.parents and src != root.resolve():
            raise StackError(f"configuration.copy: {rel} is outside the project")
        dest = out / "function" / src.relative_to(root.resolve())
        if src.is_dir():
            shutil.copytree(src, dest, ignore=_IGNORE, dirs_exist_ok=True)
        elif src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        else:
            raise StackError(f"configuration.copy: {rel} does not exist")
    return out
