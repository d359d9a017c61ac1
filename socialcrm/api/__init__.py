"""Shared REST API infrastructure: one error shape, keyset pagination, per-token throttling, schema helpers.

Nothing here imports an app; the apps' `api/` packages build on it.
"""
