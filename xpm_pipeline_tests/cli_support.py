"""Running `xpm-pipeline` as a user does: a real process, its output, its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    from xpm_pipeline_tests.secret_scan import observe

    merged = {**os.environ, "COLUMNS": "200", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "xpm_pipeline.cli", *args], capture_output=True, text=True,
                            env=merged, timeout=timeout)
    observe(f"xpm-pipeline {args[0] if args else ''} stdout", result.stdout)
    observe(f"xpm-pipeline {args[0] if args else ''} stderr", result.stderr)
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def cli_env(sandbox, tmp_path, **extra: str) -> dict:
    """XPM_* as a user sets them for a sandbox, with a fresh SQLite warehouse and token key."""
    from xpm_pipeline.secrets import TokenCipher

    return {
        "XPM_API_BASE_URL": sandbox.base_url,
        "XPM_CLIENT_ID": sandbox.client_id,
        "XPM_CLIENT_SECRET": sandbox.client_secret,
        "XPM_TOKEN_KEY": TokenCipher.generate_key(),
        "XPM_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
        "XPM_HOME": str(tmp_path / ".xpm"),
        **extra,
    }
