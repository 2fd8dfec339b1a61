"""JOSE and the bundle's keys: compact JWS on `cryptography`, keysets, minting, expiry wording.

Imports the foundation modules only: no HTTP, no cache, nothing about issuers (verifying
against an issuer's keys is `oidc.verify`).
"""
