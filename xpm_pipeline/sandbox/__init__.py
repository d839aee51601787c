"""XPM sandbox (placeholder docstring)."""
from xpm_pipeline.sandbox.config import SandboxConfig
from xpm_pipeline.sandbox.server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer"]
