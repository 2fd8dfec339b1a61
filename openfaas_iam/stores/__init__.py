"""Stores: the shared cache, keysets written through the gateway, watched mounts, the Kubernetes API.

`cache` is Redis behind a circuit breaker over an in-process map (and the strict shared store
sessions need), `secrets` writes keysets through the gateway's secrets API, `watched_file`
re-reads a mounted secret when it changes, `kubernetes` is a minimal in-cluster API client.
May import `jose` (keysets) and the foundation modules only.
"""
