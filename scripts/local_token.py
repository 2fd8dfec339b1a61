"""`make token`: an OpenFaaS API token for trying `make run` without an identity provider.

`make run` trusts the IdPs in the IAM configuration (examples/iam.yaml names Keycloak, GitHub
and Kubernetes, none of which answers here), so a newcomer has no IdP token to exchange. This
mints, with `make run`'s own local signing key, the token the exchange would have minted for
an IdP token with the given claims: the same Roles match, the same policies are named. It
reads the private keyset from the local secret store, so it works only where `make run`'s
state is (it is a development tool, never part of a deployment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openfaas_iam.engine.roles import role_matcher  # noqa: E402
from openfaas_iam.jose.keyset import read_keyset_file  # noqa: E402
from openfaas_iam.jose.mint import api_token_claims, sign  # noqa: E402
from openfaas_iam.model.loading import load_paths  # noqa: E402

DEFAULT_CLAIMS = {
    "iss": "https://keycloak.example.com/realms/openfaas",
    "sub": "0f2d6c1e",
    "preferred_username": "alice",
    "email": "alice@example.com",
    "groups": ["openfaas-dev"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="make token",
        description="Print an OpenFaaS API token for make run, as the exchange would mint it for an IdP token "
        "with these claims (default: alice, a developer of examples/iam.yaml).",
    )
    p.add_argument("--claims", default="", help="the IdP token's claims as JSON (env CLAIMS)")
    p.add_argument("--config", default=os.environ.get("IAM_CONFIG", "examples/iam.yaml"), help="the IAM objects")
    p.add_argument("--state-dir", default=".local", help="make run's state (default: .local)")
    p.add_argument("--lifetime", type=float, default=3600.0, help="seconds (default 3600)")
    args = p.parse_args(argv)
    given = args.claims or os.environ.get("CLAIMS") or ""
    try:
        claims = json.loads(given) if given else DEFAULT_CLAIMS
    except ValueError as e:
        print(f'make token: CLAIMS is not JSON ({e}): give an object, e.g. \'{{"sub": "bob"}}\'', file=sys.stderr)
        return 2
    if not isinstance(claims, dict):
        print("make token: CLAIMS must be a JSON object of the IdP token's claims", file=sys.stderr)
        return 2
    keys = Path(args.state_dir) / "secrets" / "iam-signing-keys" / "iam-signing-keys"
    if not keys.exists():
        print(f"make token: no local signing keys at {keys}: start make run once first", file=sys.stderr)
        return 2
    config = load_paths([args.config])
    policies = role_matcher(config).policies(claims)
    if not policies:
        print(f"make token: no Role of {args.config} matches these claims: {json.dumps(claims)}", file=sys.stderr)
        return 1
    port = os.environ.get("PORT", "8080")
    issuer = os.environ.get("ISSUER_URL") or f"http://127.0.0.1:{port}/function/iam-discovery"
    minted = api_token_claims(claims, issuer_url=issuer, policies=policies, lifetime=args.lifetime)
    print(sign(minted, read_keyset_file(str(keys)).current))
    print(f"# {claims.get('sub')}: policies {', '.join(policies)}; expires in {int(args.lifetime)} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
