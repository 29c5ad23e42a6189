"""The platform client: HTTP (REST) and Core1 RPC, retries, OAuth, answer checks.
The public modules are the ones listed here; `answers`, `_shapes` and `_rpc` are the
client's internals.
"""

__all__ = ["api", "auth", "client", "models"]
