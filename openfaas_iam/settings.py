"""Deployment settings, read once from the function's environment (stack.yml).

The core takes a Settings value; only `from_env` looks at environment variables,
so tests build Settings directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_SECRETS = "/var/openfaas/secrets"


def _duration(value: str) -> float:
    from openfaas_iam.durations import parse_duration

    return parse_duration(value)


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _config_reload(value: str) -> str:
    value = value.strip().lower()
    if value not in ("thread", "process"):
        raise ValueError(f"config_reload must be 'thread' or 'process', not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    public_gateway_url: str = "http://127.0.0.1:8080"
    issuer_url: str = ""
    token_endpoint: str = ""
    authz_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "openfaas-iam:"
    secret_mount_path: str = DEFAULT_SECRETS
    iam_config: str = "iam-config"  # a secret key under secret_mount_path, a path, or "kubernetes"
    # How a changed iam-config file is parsed: "process" (a child interpreter, off the serving
    # process's GIL; service/config_process.py) or "thread" (a background thread in the function).
    config_reload: str = "process"
    signing_keys_secret: str = "iam-signing-keys"  # private: mounted only into iam-token and iam-rotate
    public_keys_secret: str = "iam-public-keys"  # public: what every verifier trusts
    cache_key_secret: str = "iam-cache-key"  # HMAC key authenticating shared cache entries
    redis_password_secret: str = "redis-password"
    redis_ca_secret: str = "redis-ca"
    mount_sync_allowance: float = 120.0  # how late the kubelet may update a mounted secret
    own_jwks_max_age: float = 60.0  # Cache-Control max-age of the bundle's published JWKS
    leeway_seconds: float = 60.0
    allow_insecure_issuers: bool = False
    max_body_bytes: int = 64 * 1024
    fetch_timeout: float = 5.0
    jwks_max_stale: float = 6 * 3600.0
    jwks_refetch_interval: float = 5.0
    service_account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"
    gateway_url: str = "http://gateway.openfaas:8080"
    proxy_read_timeout: float = 300.0
    report_only: bool = False  # the whole proxy: decide and audit "would deny", forward anyway
    report_only_until: str = ""  # RFC 3339: report-only ends then (empty: until turned off)
    max_streams_per_subject: int = 2  # open log streams per caller per replica
    max_streams: int = 4  # per replica; keep it under the template's `threads` (8) so unary calls find a worker
    bundle_namespace: str = "openfaas-fn"  # where the bundle's functions and secrets live
    protected_secrets: frozenset[str] = frozenset()  # more secret names only an exact grant may touch
    audit_verbs: frozenset[str] = frozenset({"PUT", "POST", "DELETE"})
    audit_webhook_url: str = ""
    audit_webhook_secret: str = "audit-webhook-secret"
    audit_stream: str = ""
    rotation_interval: float = 24 * 3600.0
    kubernetes_namespace: str = ""
    iam_namespace: str = "openfaas"
    sso_issuer: str = ""  # the JwtIssuer (name or iss) people sign in with on the browser page
    sso_client_id: str = ""
    sso_client_secret: str = "sso-client-secret"  # the mounted secret key holding the client secret
    sso_redirect_url: str = ""
    # The dedicated browser origin of the sign-in page (https://iam.example.com): never the gateway's.
    signin_origin: str = ""
    sso_scopes: str = "openid email profile groups"
    sso_display_name: str = ""  # the IdP as people know it, on the sign-in page (empty: the issuer's host)
    # The authorizing proxy's public host root (faas-cli --gateway), for the page's suggested commands.
    proxy_url: str = ""

    def __post_init__(self) -> None:
        base = self.public_gateway_url.rstrip("/")
        object.__setattr__(self, "public_gateway_url", base)
        if not self.issuer_url:
            object.__setattr__(self, "issuer_url", f"{base}/function/iam-discovery")
        if not self.token_endpoint:
            object.__setattr__(self, "token_endpoint", f"{base}/function/iam-token/oauth/token")
        if not self.authz_url:
            object.__setattr__(self, "authz_url", f"{base}/function/iam-authz")
        object.__setattr__(self, "proxy_url", (self.proxy_url or self.authz_url).rstrip("/"))
        origin = self.signin_origin.rstrip("/")
        object.__setattr__(self, "signin_origin", origin)
        if not self.sso_redirect_url and origin:
            object.__setattr__(self, "sso_redirect_url", f"{origin}/callback")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str, default: str = "") -> str:
            return env.get(name, default) or default

        def number(name: str, default: str) -> float:
            """A numeric setting; a bad value names the setting (a bare float() traceback did not)."""
            try:
                return float(get(name, default))
            except ValueError:
                raise ValueError(f"setting {name}={get(name, default)!r} is not a number") from None

        def whole(name: str, default: str) -> int:
            value = number(name, default)
            if value != int(value):
                raise ValueError(f"setting {name}={get(name, default)!r} is not a whole number")
            return int(value)

        return cls(
            public_gateway_url=get("public_gateway_url", "http://127.0.0.1:8080"),
            issuer_url=get("issuer_url"),
            token_endpoint=get("token_endpoint"),
            authz_url=get("authz_url"),
            redis_url=get("redis_url"),
            redis_prefix=get("redis_prefix", "openfaas-iam:"),
            secret_mount_path=get("secret_mount_path", DEFAULT_SECRETS),
            iam_config=get("iam_config", "iam-config"),
            config_reload=_config_reload(get("config_reload", "process")),
            signing_keys_secret=get("signing_keys_secret", "iam-signing-keys"),
            public_keys_secret=get("public_keys_secret", "iam-public-keys"),
            cache_key_secret=get("cache_key_secret", "iam-cache-key"),
            redis_password_secret=get("redis_password_secret", "redis-password"),
            redis_ca_secret=get("redis_ca_secret", "redis-ca"),
            mount_sync_allowance=number("mount_sync_allowance", "120"),
            own_jwks_max_age=number("own_jwks_max_age", "60"),
            leeway_seconds=number("leeway_seconds", "60"),
            allow_insecure_issuers=_bool(env.get("allow_insecure_issuers")),
            max_body_bytes=whole("max_body_bytes", str(64 * 1024)),
            fetch_timeout=number("fetch_timeout", "5"),
            jwks_max_stale=number("jwks_max_stale", str(6 * 3600)),
            jwks_refetch_interval=number("jwks_refetch_interval", "5"),
            service_account_dir=get("service_account_dir", "/var/run/secrets/kubernetes.io/serviceaccount"),
            gateway_url=get("gateway_url", "http://gateway.openfaas:8080"),
            proxy_read_timeout=number("proxy_read_timeout", "300"),
            report_only=_bool(env.get("report_only")),
            report_only_until=get("report_only_until"),
            max_streams_per_subject=whole("max_streams_per_subject", "2"),
            max_streams=whole("max_streams", str(max(1, whole("threads", "8") // 2))),
            bundle_namespace=get("bundle_namespace", "openfaas-fn"),
            protected_secrets=frozenset(n.strip() for n in get("protected_secrets").split(",") if n.strip()),
            audit_verbs=frozenset(
                v.strip().upper() for v in get("audit_verbs", "PUT,POST,DELETE").split(",") if v.strip()
            ),
            audit_webhook_url=get("audit_webhook_url"),
            audit_webhook_secret=get("audit_webhook_secret", "audit-webhook-secret"),
            audit_stream=get("audit_stream"),
            rotation_interval=_duration(get("rotation_interval", "24h")),
            kubernetes_namespace=get("kubernetes_namespace"),
            iam_namespace=get("iam_namespace", "openfaas"),
            sso_issuer=get("sso_issuer"),
            sso_client_id=get("sso_client_id"),
            sso_client_secret=get("sso_client_secret", "sso-client-secret"),
            sso_redirect_url=get("sso_redirect_url"),
            signin_origin=get("signin_origin"),
            sso_scopes=get("sso_scopes", "openid email profile groups"),
            sso_display_name=get("sso_display_name"),
            proxy_url=get("proxy_url"),
        )

    def report_only_now(self, now: float) -> bool:
        """Whether the proxy-wide report-only period is on at `now` (an unreadable end date ends it)."""
        if not self.report_only:
            return False
        if not self.report_only_until:
            return True
        from datetime import datetime

        try:
            until = datetime.fromisoformat(self.report_only_until.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return now < until

    def bundle_secrets(self) -> frozenset[str]:
        """Every secret this deployment names as the bundle's own, under whatever name it was
        given: only the gateway admin or an exact grant may touch them (model/protected.py)."""
        named = {
            self.signing_keys_secret,
            self.public_keys_secret,
            self.cache_key_secret,
            self.redis_password_secret,
            self.redis_ca_secret,
            self.audit_webhook_secret,
            self.sso_client_secret,
        }
        if "/" not in self.iam_config and self.iam_config != "kubernetes":
            named.add(self.iam_config)
        return frozenset(named) | self.protected_secrets

    def secret_path(self, key: str) -> str:
        """Where a secret key is mounted: `/var/openfaas/secrets/<key>` in a cluster."""
        return f"{self.secret_mount_path.rstrip('/')}/{key}"

    @property
    def ca_bundle(self) -> str | None:
        """The `ca-bundle` secret (key `ca.crt`) when mounted: used for every outbound TLS call."""
        path = self.secret_path("ca.crt")
        return path if os.path.isfile(path) else None

    @property
    def iam_config_path(self) -> str:
        if "/" in self.iam_config:
            return self.iam_config
        return self.secret_path(self.iam_config)
