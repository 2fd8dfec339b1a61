"""Issuers: bounded outbound HTTP, RFC 8414/OIDC discovery, the shared JWKS cache, verification.

`outbound` bounds every fetch, `discovery` reads an issuer's keys, `jwks_cache` shares them
between replicas (sealed, time-bounded entries), `verify` checks subject and own tokens
(RFC 8725), `own_discovery` is the bundle's own discovery document. May import `stores`,
`observability`, `jose`, `model` and the foundation modules.
"""
