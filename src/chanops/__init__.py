"""chanops: Omni-Channel connections as code, kept equal to YAML manifests in git."""

try:
    # Written by setuptools-scm from the git tag when the package is built or installed.
    from chanops._version import __version__
except ImportError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
