"""The IAM model: JwtIssuer, Policy and Role as frozen values, their loading and validation.

Owns the policy language's parts (actions, resources with variables, claims, condition
operators), the bundle's protected objects and which function may mount which of its secrets
(`custody`), and lint advice. Pure: it imports only the
standard library, PyYAML and the foundation modules (`errors`, `json_codec`, `durations`);
never an I/O client, Flask or waitress (import-linter checks it).
"""
