"""Audit events (log, Redis stream, signed webhook) and Prometheus metrics.

Imports the foundation modules only, so every other layer can report through it.
"""
