"""The browser sign-in page on iam-token: the flow (PKCE, state, nonce), its pages, its sessions.

May import `service` (the exchange runs in-process), `oidc`, `stores`, `jose`, `engine`,
`model` and the foundation modules. Pages are escaped HTML with nonce'd static assets.
"""
