"""The authorizing proxy: what a /system/* call asks for, who is calling, and what is forwarded.

`rest_api` maps a call to its permissions and its canonical upstream request, `go_json`
reads bodies the way Go does, `authz` authenticates and decides (report-only included),
`gateway_client` forwards, `fair_share` limits log streams, `basic_auth` guards the
gateway's credentials (which secrets belong to the bundle is `model.custody`). May import `oidc`, `stores`,
`observability`, `jose`, `engine`, `model` and the foundation modules; never `service`.
"""
