"""`openfaas-iam auth` and `openfaas-iam decode`: sign in, exchange, save where faas-cli reads it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

from openfaas_iam.client import oidc_client as oc
from openfaas_iam.client.faas_config import read_entry, save_token
from openfaas_iam.client.proxy_client import check_proxy, whoami

# What `--refresh` may take from the saved entry (never a secret: the client secret comes from the environment).
SAVED_OPTIONS = ("issuer", "authority", "client_id", "grant", "audience", "token_file", "scope")
DEFAULTS = {"grant": "code", "scope": "openid email profile groups"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "auth",
        help="sign in with your IdP and save an OpenFaaS token for faas-cli",
        description="Get a token from your identity provider (browser sign-in with PKCE, client credentials, "
        "or an existing CI token), exchange it for an OpenFaaS token at the bundle's token endpoint, and save "
        "it in faas-cli's config file for --gateway. The counterpart of `faas-cli pro auth`.",
        epilog="examples:\n"
        "  openfaas-iam auth --gateway https://gw.example.com/function/iam-authz \\\n"
        "      --authority https://keycloak.example.com/realms/openfaas --client-id openfaas\n"
        "  openfaas-iam auth --gateway URL --authority URL --client-id ci --client-secret S \\\n"
        "      --grant client_credentials\n"
        "  openfaas-iam auth --gateway URL --token-file $TOKEN_FILE          # GitLab, Kubernetes\n"
        "  openfaas-iam auth --gateway URL --audience URL                    # GitHub Actions\n"
        "  openfaas-iam auth --gateway URL --refresh                         # again, as last time\n"
        "\n"
        "--gateway must be openfaas-iam's proxy (iam-authz), not the OpenFaaS gateway itself: it is\n"
        "checked first (GET <gateway>/.well-known/openfaas-iam) and the command says what to use.\n"
        "exit codes: 0 signed in, 1 sign-in, exchange or check failed, 2 usage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gateway",
        required=True,
        help="the URL faas-cli uses (e.g. https://gw/function/iam-authz); the token is saved for it",
    )
    p.add_argument("--issuer", help="the bundle's issuer URL (default: <gateway root>/function/iam-discovery)")
    p.add_argument("--authority", help="your IdP's issuer URL (OIDC discovery)")
    p.add_argument("--client-id", help="the OAuth client at your IdP")
    p.add_argument(
        "--client-secret",
        default=os.environ.get("OPENFAAS_IAM_CLIENT_SECRET"),
        help="for confidential clients (env OPENFAAS_IAM_CLIENT_SECRET)",
    )
    p.add_argument(
        "--grant",
        choices=("code", "client_credentials"),
        default="code",
        help="how to get the IdP token (default: code)",
    )
    p.add_argument("--token", help="an existing JWT to exchange (CI federation)")
    p.add_argument("--token-file", help="a file holding the JWT to exchange (GitLab, Kubernetes projected tokens)")
    p.add_argument("--audience", help="audience to request from the IdP (GitHub Actions: the gateway URL)")
    p.add_argument(
        "--scope",
        default="openid email profile groups",
        help="scopes to request (default: openid email profile groups)",
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="sign in again with the options saved for --gateway by the last `openfaas-iam auth` "
        "(issuer, authority, client id, grant, audience, token file); options given now win",
    )
    p.add_argument(
        "--skip-gateway-check",
        action="store_true",
        help="do not check that --gateway is openfaas-iam's proxy (e.g. it is not reachable from here yet)",
    )
    p.add_argument("--no-exchange", action="store_true", help="stop at the IdP token: print it, save nothing")
    p.add_argument("--print-token", action="store_true", help="print the token to standard output")
    p.add_argument("--pretty", action="store_true", help='print the decoded token as {"header", "payload"}')
    p.add_argument("--redirect-host", default="http://127.0.0.1", help="callback host (default: http://127.0.0.1)")
    p.add_argument("--port", type=int, default=31111, help="callback port (default: 31111)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the browser sign-in (default: 300)")
    p.add_argument("--no-browser", action="store_true", help="print the sign-in URL instead of opening a browser")
    p.add_argument(
        "--ca-bundle", default=os.environ.get("REQUESTS_CA_BUNDLE"), help="CA certificates for a private IdP or gateway"
    )
    p.set_defaults(run=run)

    w = sub.add_parser(
        "whoami",
        help="who the token saved for a gateway says you are",
        description="Call the proxy's /whoami with the token `openfaas-iam auth` saved for --gateway and print "
        "the subject, the policies and when the token expires. Exit codes: 0 ok, 1 no token, expired or refused "
        "(the message says what to run), 2 usage.",
    )
    w.add_argument(
        "--gateway",
        default=os.environ.get("OPENFAAS_URL"),
        help="the proxy URL the token was saved for (default: $OPENFAAS_URL)",
    )
    w.add_argument("--json", action="store_true", help="print the proxy's answer as JSON")
    w.add_argument(
        "--ca-bundle", default=os.environ.get("REQUESTS_CA_BUNDLE"), help="CA certificates for a private gateway"
    )
    w.set_defaults(run=run_whoami)

    d = sub.add_parser(
        "decode",
        help="print a JWT's header and payload",
        description='Print a JWT as {"header", "payload"} (not verified).',
    )
    d.add_argument("token", nargs="?", default="-", help="the token, or - for standard input (default)")
    d.set_defaults(run=run_decode)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _bundle_issuer(gateway: str) -> str:
    parts = urlsplit(gateway.rstrip("/"))
    path = parts.path.split("/function/")[0]
    return f"{parts.scheme}://{parts.netloc}{path}/function/iam-discovery"


def _subject(args: argparse.Namespace, session) -> tuple[str, str]:
    """(IdP token, its RFC 8693 token type suffix)."""
    if args.token or args.token_file:
        if args.token_file:
            try:
                with open(args.token_file) as f:
                    return f.read().strip(), "jwt"
            except OSError as e:
                raise oc.AuthFlowError(f"cannot read --token-file {args.token_file}: {e.strerror}") from None
        return args.token.strip(), "jwt"
    if not args.authority:
        gha = oc.github_actions_token(dict(os.environ), args.audience, session)
        if gha:
            _say("Using the GitHub Actions OIDC token of this job.")
            return gha, "jwt"
        raise oc.AuthFlowError("give --authority and --client-id to sign in, or --token/--token-file (CI)")
    if not args.client_id:
        raise oc.AuthFlowError("--client-id is required with --authority")
    meta = oc.discover(args.authority, session)
    if args.grant == "client_credentials":
        if not args.client_secret:
            raise oc.AuthFlowError("--grant client_credentials needs --client-secret")
        return oc.client_credentials(
            meta=meta,
            client_id=args.client_id,
            client_secret=args.client_secret,
            scope=None if args.scope.startswith("openid") else args.scope,
            audience=args.audience,
            session=session,
        ), "access_token"
    token = oc.code_flow(
        meta=meta,
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_host=args.redirect_host,
        port=args.port,
        scope=args.scope or "openid email profile groups",
        audience=args.audience,
        timeout=args.timeout,
        open_browser=not args.no_browser,
        say=_say,
        session=session,
    )
    return token, "id_token"


def _show(token: str, args: argparse.Namespace) -> None:
    if args.pretty:
        print(json.dumps(oc.decode_unverified(token), indent=2))
    elif args.print_token or args.no_exchange:
        print(token)


def _apply_saved(args: argparse.Namespace) -> None:
    """--refresh: fill what was not given now from the options saved with the last token for --gateway."""
    entry = read_entry(args.gateway)
    if entry is None:
        raise oc.AuthFlowError(
            f"nothing is saved for {args.gateway.rstrip('/')}; run openfaas-iam auth --gateway {args.gateway} "
            "with --authority/--client-id or --token-file once"
        )
    saved = entry["options"]
    for name in SAVED_OPTIONS:
        current = getattr(args, name)
        if name in saved and (current is None or current == DEFAULTS.get(name)):
            setattr(args, name, saved[name])


def run(args: argparse.Namespace) -> int:
    session = oc._session(args.ca_bundle or True)
    try:
        if args.refresh:
            _apply_saved(args)
        marker: dict = {}
        if not args.no_exchange and not args.skip_gateway_check:
            marker = check_proxy(args.gateway, session)
        subject, kind = _subject(args, session)
        if args.no_exchange:
            _show(subject, args)
            return 0
        # The proxy names the bundle's issuer: a host route to iam-authz serves no /function/iam-discovery.
        named = marker.get("issuer") if isinstance(marker.get("issuer"), str) else None
        issuer = args.issuer or named or _bundle_issuer(args.gateway)
        meta = oc.discover(issuer, session)
        result = oc.exchange(meta.token_endpoint, subject, kind, session)
    except oc.AuthFlowError as e:
        _say(f"openfaas-iam auth: {e}")
        return 1
    token = result["access_token"]
    options = {"issuer": issuer}
    if args.authority:
        options.update(authority=args.authority, client_id=args.client_id or "", grant=args.grant)
    if args.audience:
        options["audience"] = args.audience
    if args.token_file:
        options["token_file"] = os.path.abspath(args.token_file)
    if args.scope != DEFAULTS["scope"]:
        options["scope"] = args.scope
    try:
        path = save_token(args.gateway, token, options)
    except OSError as e:  # UnsafeConfigPath: a planted link or a folder that is not ours
        _say(f"openfaas-iam auth: the token was not saved: {e}")
        return 1
    _show(token, args)
    payload = oc.decode_unverified(token)["payload"]
    _say(
        f"Signed in as {payload.get('sub')} with policies {', '.join(payload.get('policy') or []) or 'none'}; "
        f"the token expires in {oc.expires_in(token) // 60} min. Saved for {args.gateway} in {path}."
    )
    return 0


def run_whoami(args: argparse.Namespace) -> int:
    if not args.gateway:
        _say("openfaas-iam whoami: give --gateway (or set OPENFAAS_URL)")
        return 2
    try:
        entry = read_entry(args.gateway)
    except OSError as e:
        _say(f"openfaas-iam whoami: {e}")
        return 2
    if entry is None or not entry["token"]:
        _say(
            f"openfaas-iam whoami: no token is saved for {args.gateway}; "
            f"run: openfaas-iam auth --gateway {args.gateway}"
        )
        return 1
    try:
        me = whoami(args.gateway, entry["token"], oc._session(args.ca_bundle or True))
    except oc.AuthFlowError as e:
        _say(f"openfaas-iam whoami: {e}")
        return 1
    if args.json:
        print(json.dumps(me, indent=2))
        return 0
    print(f"subject   {me.get('subject')}" + (" (gateway admin)" if me.get("admin") else ""))
    if me.get("federated_issuer"):
        print(f"issuer    {me.get('federated_issuer')}")
    print(f"policies  {', '.join(me.get('policies') or []) or 'none'}")
    if me.get("expires_at"):
        print(f"expires   {me['expires_at']} (in {int(me.get('expires_in') or 0) // 60} min)")
    for perm in me.get("permissions") or []:
        print(f"  may     {', '.join(perm.get('actions') or [])} on {', '.join(perm.get('resources') or [])}")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()
    try:
        print(json.dumps(oc.decode_unverified(token), indent=2))
    except oc.AuthFlowError as e:
        print(f"openfaas-iam decode: {e}", file=sys.stderr)
        return 1
    return 0
