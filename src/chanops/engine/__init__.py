"""The reconcile engine: planner (pure), executor, reconciler (the shell), rendering.

Start at `chanops.engine.reconciler` (the entry point for commands and the daemon);
`_planner` holds the rules, `plan` the data, `render` the output formats.
"""

# The public modules; the others are this package's internals.
__all__ = ["conditions", "diff", "export", "plan", "pointers", "reconciler", "render"]
