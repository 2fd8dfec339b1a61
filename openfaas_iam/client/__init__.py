"""The command line's side: OAuth flows against an IdP, faas-cli's config file, calls to the proxy.

Used by `cli`; may import `signin` (the callback page shares its style), `service` (the
exchange's constants) and everything below them.
"""
