"""What a function builds and runs: the token exchange, key rotation, the runtime objects.

Also the configuration sources (mounted file or custom resources, parsed off the request
path), the response shapes and the routing the handlers use. May import `oidc`, `stores`,
`observability`, `jose`, `engine`, `model` and the foundation modules; never `proxy`,
`signin`, `client` or `cli`.
"""
