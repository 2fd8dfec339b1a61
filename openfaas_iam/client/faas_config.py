"""faas-cli's own config file, so `faas-cli` picks up the token by itself.

Layout (faas-cli `config` package): `config.yml` in `~/.openfaas/`, in the directory named
by `OPENFAAS_CONFIG`, or in `./.openfaas/` when `CI=true`; the directory is created 0700.
With CI=true that folder is in a checked-out repository, whose author chose its contents:
nothing here follows a symlink, and the token is written 0600 by atomic rename.
`auths: [{gateway, auth: oauth2, token, options: [{name, value}]}]`, one entry per gateway.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("OPENFAAS_CONFIG"):
        return Path(env["OPENFAAS_CONFIG"]).expanduser()
    if env.get("CI", "").lower() == "true":
        return Path.cwd() / ".openfaas"
    return Path(env.get("HOME") or Path.home()) / ".openfaas"


def normalize_gateway(url: str) -> str:
    """faas-cli compares gateways without a trailing slash."""
    return url.strip().rstrip("/")


class UnsafeConfigPath(OSError):
    """The config folder or file is not safely ours: written nowhere, with the reason."""


def _open_folder(folder: Path) -> int:
    """The config folder as a directory fd: created 0700 if missing, refused if it is a symlink,
    someone else's, or writable by others (a checked-out repository can hold `.openfaas` with CI=true)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeConfigPath(
                f"{folder} is a symbolic link or not a folder; refusing to write a token there"
            ) from None
        raise
    st = os.fstat(fd)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        os.close(fd)
        raise UnsafeConfigPath(
            f"{folder} belongs to another user or others may write to it (mode {stat.S_IMODE(st.st_mode):o}); "
            "refusing to write a token there"
        )
    return fd


def _read_existing(dir_fd: int, folder: Path) -> dict[str, Any]:
    try:
        fd = os.open("config.yml", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return {}
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeConfigPath(f"{folder / 'config.yml'} is a symbolic link; refusing to follow it") from None
        raise
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise UnsafeConfigPath(f"{folder / 'config.yml'} is not a regular file of yours")
        loaded = yaml.safe_load(f.read()) or {}
    return loaded if isinstance(loaded, dict) else {}


def write_private(dir_fd: int, name: str, text: str, mode: int = 0o600) -> None:
    """Write `name` in the folder atomically, mode 0600 (or `mode`), never through a planted link.

    The temporary file has a random name and is created with O_EXCL|O_NOFOLLOW (a committed
    `.config.yml.tmp` symlink is never followed); rename replaces a link at `name` itself
    instead of writing where it points.
    """
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def read_entry(gateway: str, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """This gateway's saved entry as {"token", "options": {name: value}}, or None (same safety checks as saving)."""
    folder = config_dir(env)
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeConfigPath(f"{folder} is a symbolic link or not a folder; refusing to read it") from None
        raise
    try:
        doc = _read_existing(dir_fd, folder)
    finally:
        os.close(dir_fd)
    gw = normalize_gateway(gateway)
    for a in doc.get("auths") or []:
        if isinstance(a, dict) and normalize_gateway(str(a.get("gateway", ""))) == gw:
            options = {
                str(o.get("name")): str(o.get("value"))
                for o in a.get("options") or []
                if isinstance(o, dict) and o.get("name") and o.get("value") is not None
            }
            return {"token": str(a.get("token") or ""), "options": options}
    return None


def save_token(gateway: str, token: str, options: Mapping[str, str], env: Mapping[str, str] | None = None) -> Path:
    """Replace this gateway's entry (or add one), leaving every other entry untouched."""
    folder = config_dir(env)
    dir_fd = _open_folder(folder)
    try:
        return _save(dir_fd, folder, gateway, token, options)
    finally:
        os.close(dir_fd)


def _save(dir_fd: int, folder: Path, gateway: str, token: str, options: Mapping[str, str]) -> Path:
    path = folder / "config.yml"
    doc = _read_existing(dir_fd, folder)
    auths = [a for a in doc.get("auths") or [] if isinstance(a, dict)]
    gw = normalize_gateway(gateway)
    entry = {
        "gateway": gw,
        "auth": "oauth2",
        "token": token,
        "options": [{"name": k, "value": v} for k, v in options.items()],
    }
    replaced = False
    for i, a in enumerate(auths):
        if normalize_gateway(str(a.get("gateway", ""))) == gw:
            auths[i] = entry
            replaced = True
    if not replaced:
        auths.append(entry)
    # Keep one entry per gateway even if an older file had duplicates.
    seen: set[str] = set()
    unique = []
    for a in auths:
        key = normalize_gateway(str(a.get("gateway", "")))
        if key not in seen:
            seen.add(key)
            unique.append(a)
    doc["auths"] = unique
    write_private(dir_fd, "config.yml", yaml.safe_dump(doc, sort_keys=False))
    return path
