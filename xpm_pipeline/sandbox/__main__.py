"""``python -m xpm_pipeline.sandbox serve ...``: the same command as ``xpm-pipeline sandbox serve``."""

from xpm_pipeline.sandbox.cli import app

app(prog_name="python -m xpm_pipeline.sandbox")
