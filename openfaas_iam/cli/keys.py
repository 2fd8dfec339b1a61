"""`openfaas-iam keys init`: the first signing keyset, for a file, a Secret manifest or faas-cli."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

from openfaas_iam.client.faas_config import write_private
from openfaas_iam.jose.keyset import initial_keyset

SECRET = "iam-signing-keys"
PUBLIC_SECRET = "iam-public-keys"


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="manage the bundle's signing keyset", description="Manage the signing keyset.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    keys_sub.required = True
    init = keys_sub.add_parser(
        "init",
        help="write a new keyset (one current key, one next key)",
        description="Write a new ES256 signing keyset. --format json (default) is the secret's value, for "
        "`faas-cli secret create iam-signing-keys --from-file=FILE`, and --public-output its public half, for "
        "`faas-cli secret create iam-public-keys --from-file=FILE`; --format manifest is both Kubernetes Secrets.",
    )
    init.add_argument(
        "--public-output", help="with --format json: also write the public keyset (iam-public-keys) to this file"
    )
    init.add_argument("-o", "--output", default="-", help="file to write (mode 0600), or - for standard output")
    init.add_argument("--format", choices=("json", "manifest"), default="json", help="what to write (default: json)")
    init.add_argument(
        "--namespace", default="openfaas-fn", help="namespace of the Secret manifest (default: openfaas-fn)"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(run=run_init)


def _secret(name: str, namespace: str, value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            # managed-by: openfaas is what `faas-cli secret create` sets; the gateway lists only those.
            "labels": {"app.kubernetes.io/part-of": "openfaas-iam", "app.kubernetes.io/managed-by": "openfaas"},
        },
        "data": {name: base64.b64encode(value.encode()).decode()},
    }


def _write_new(path: str, text: str, mode: int) -> None:
    """A new file (O_EXCL|O_NOFOLLOW temporary) renamed over `path`: never through a planted link."""
    folder = os.path.dirname(os.path.abspath(path))
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_private(dir_fd, os.path.basename(path), text, mode)
    finally:
        os.close(dir_fd)


def run_init(args: argparse.Namespace) -> int:
    keyset = initial_keyset()
    text = keyset.to_json()
    if args.format == "manifest":
        items = [_secret(SECRET, args.namespace, text), _secret(PUBLIC_SECRET, args.namespace, keyset.public_json())]
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2)
    elif args.public_output:
        # lexists: a dangling symlink counts as existing (os.path.exists follows it and says no).
        for path in (args.output, args.public_output):
            if path != "-" and os.path.lexists(path) and not args.force:
                print(f"openfaas-iam keys init: {path} exists; use --force to replace it", file=sys.stderr)
                return 1
        # Like the private output: a new file renamed into place, so a link planted at the path
        # (in a shared folder) is replaced, never written through. Public, so 0644.
        _write_new(args.public_output, keyset.public_json() + "\n", 0o644)
    if args.output == "-":
        sys.stdout.write(text + "\n")
        return 0
    if os.path.lexists(args.output) and not args.force:
        print(f"openfaas-iam keys init: {args.output} exists; use --force to replace it", file=sys.stderr)
        return 1
    # Always a new 0600 file renamed into place: --force never keeps an old file's mode and never
    # writes through a (dangling) symlink; the link itself is replaced.
    _write_new(args.output, text + "\n", 0o600)
    print(f"wrote a new signing keyset ({args.format}) to {args.output}", file=sys.stderr)
    return 0
