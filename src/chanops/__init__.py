"""chanops: Omni-Channel connections as code, kept equal to YAML manifests in git."""

__version__ = "0.1.0"
