"""Logging (structlog configuration and processors) and Prometheus metrics.

Configured once at the edge (`configure_logging` in a command); library modules only
call `structlog.get_logger(__name__)`.
"""

# The public modules; the others are this package's internals.
__all__ = ["logging", "metrics"]
