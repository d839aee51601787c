"""The whole-suite secrets scan (``secret_scan.py``) really fails a session that lets a secret out, and
tokens are encrypted at rest in the file a user's warehouse lives in."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.cli_support import cli_env, run

REPO = Path(__file__).resolve().parents[1]


def _inner_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """A pytest session of its own, with only the scan plugin, over one test file."""
    (tmp_path / "test_inner.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "xpm_pipeline_tests.secret_scan", "-p", "no:cacheprovider",
         "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "leak",
    [
        'logging.getLogger("careless").warning("refreshing with %s", token.reveal())',
        'raise_and_catch(f"XPM said no to {token.reveal()}")',
        'logging.getLogger("careless").info("GET /x Authorization: Bearer " + "sbx_at_" + "Q" * 30)',
    ],
    ids=["log", "exception", "sandbox-token"],
)
def test_the_scan_fails_a_session_that_lets_a_secret_out(tmp_path, leak):
    value = secrets.token_urlsafe(24)
    result = _inner_session(tmp_path, f'''
import logging
import pytest
from xpm_pipeline.secrets import Secret

def raise_and_catch(message):
    with pytest.raises(RuntimeError):
        raise RuntimeError(message)

def test_inner():
    token = Secret("{value}")
    {leak}
''')
    assert result.returncode == 1, result.stdout + result.stderr  # every test passed, the session did not
    assert "1 passed" in result.stdout and "LEAK" in result.stdout
    assert value not in result.stdout + result.stderr  # the report names a hash, never the secret


def test_the_scan_passes_a_session_that_keeps_secrets_masked(tmp_path):
    result = _inner_session(tmp_path, '''
import logging
from xpm_pipeline.secrets import Secret, redact

def test_inner():
    token = Secret("sbx_at_" + "Z" * 40)
    logging.getLogger("careful").warning("refreshing with %s", token)  # prints Secret('***')
    logging.getLogger("careful").warning(redact("Authorization: Bearer " + token.reveal()))
''')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "secret scan:" in result.stdout and "none seen anywhere" in result.stdout


def test_tokens_never_reach_the_warehouse_file_in_clear(tmp_path):
    """After a real `connect`, neither the SQLite file nor its journal holds a sandbox token in clear."""
    with SandboxServer(SandboxConfig(size="small", seed=2, tenants=1), port=0) as sandbox:
        env = cli_env(sandbox, tmp_path)
        result = run("connect", "--yes", "--no-sync", env=env)
        assert result.returncode == 0, result.stderr
        issued = [*sandbox.identity.access_tokens, *sandbox.identity.refresh_tokens]
    assert issued
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("warehouse.db*"))
    assert b"oauth" in stored.lower()  # the token table is there ...
    assert b"sbx_at_" not in stored and b"sbx_rt_" not in stored  # ... its tokens are not readable
    for token in issued:
        assert token.encode() not in stored
