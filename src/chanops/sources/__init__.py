"""Where manifests come from: a git checkout chanops writes itself, and the webhook
that asks for a fetch. The public modules are the ones listed here.
"""

__all__ = ["git", "options", "webhook"]
