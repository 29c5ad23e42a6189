"""The bundled Core1 emulator: an ASGI app (`app.build_app`), its store, rules,
faults and OAuth server. The public modules are the ones listed here; the rest are
the app's internals.
"""

__all__ = ["app", "faults", "oauth", "rules"]
