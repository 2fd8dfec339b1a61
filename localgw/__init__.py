"""A local stand-in for the OpenFaaS gateway, for `make run` and the end-to-end tests.

It reads stack.yml, assembles each function's build context the way
`faas-cli build --shrinkwrap` does, runs each function from that context as its own
process, routes `/function/<name>[.<namespace>]/...` to it, serves secrets from a
local folder at the path functions read in a cluster, and plays cron-connector.
"""
