"""openfaas-iam: Identity and Access Management for OpenFaaS Community Edition.

The package is the pure core shared by every function of the bundle: it knows
nothing of Flask, waitress or the process environment. Function handlers parse
HTTP events, call into this package and render its results or typed errors.
"""

__version__ = "0.1.0"
