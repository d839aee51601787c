"""The whole-suite secrets scan (``secret_scan.py``) really fails a session that lets a secret out, on
every channel it reads; and tokens are encrypted at rest, in the SQLite file and in a PostgreSQL table,
where the wrong key gets a one-line refusal and changes nothing."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import TokenCipher
from xpm_pipeline.warehouse.control import oauth_grants
from xpm_pipeline_tests.cli_support import cli_env, run
from xpm_pipeline_tests.secret_scan import fingerprint

REPO = Path(__file__).resolve().parents[1]


def _inner_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """A pytest session of its own, with only the scan plugin, over one test file."""
    (tmp_path / "test_inner.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "xpm_pipeline_tests.secret_scan", "-p", "no:cacheprovider",
         "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )


# One inner test per channel the scan reads; each lets a different secret out. (source the report must
# name, how the secret gets out). ``token`` is a ``Secret`` (so the scan knows it); ``value`` its text.
CHANNELS = {
    "log": ("log careless", 'logging.getLogger("careless").debug("refreshing with %s", value)'),
    "log-traceback": ("log careless", '''
    try:
        raise RuntimeError("XPM said no to " + value)
    except RuntimeError:
        logging.getLogger("careless").exception("refresh failed")'''),
    "log-no-propagate": ("log isolated", '''
    isolated = logging.getLogger("isolated")
    isolated.propagate = False
    isolated.addHandler(logging.NullHandler())
    isolated.warning("token %s", value)'''),
    "pytest.raises": ("exception caught by pytest.raises", '''
    with pytest.raises(RuntimeError):
        raise RuntimeError(f"XPM said no to {value}")'''),
    "stdout": ("Captured stdout call", "print('debug:', value)"),
    "failure": ("call failed", "assert value == 'something else'"),
    "cli-output": ("xpm-pipeline sync stderr", 'observe("xpm-pipeline sync stderr", "error: " + value)'),
    "dagster-event": ("dagster event", '''
    @dg.op
    def leaky(context):
        context.add_output_metadata({"debug": value})
        return 1

    @dg.job
    def job():
        leaky()

    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success'''),
    "sandbox-token-by-shape": ("log careless", '''
    logging.getLogger("careless").info("GET /x Authorization: Bearer sbx_at_" + "Q" * 30)'''),
    "json-shape": ("log careless", '''
    logging.getLogger("careless").info('answer {"refresh_token": "%s"}', "r" * 20 + "1")'''),
    "at-rest": ("at rest in warehouse.db", '''
    import sqlite3
    with sqlite3.connect(sqlite_url[len("sqlite:///"):]) as db:
        db.execute("create table t (v text)")
        db.execute("insert into t values (?)", ("sbx_rt_" + "Z" * 40,))'''),
}


def test_the_scan_fails_a_session_that_lets_a_secret_out_on_any_channel(tmp_path):
    values = {name: secrets.token_urlsafe(24) for name in CHANNELS}
    tests = "\n".join(
        f"def test_{name.replace('-', '_').replace('.', '_')}(sqlite_url):\n"
        f"    token = Secret({values[name]!r})\n"
        f"    value = token.reveal()\n"
        f"    {leak.strip()}\n"
        for name, (_, leak) in CHANNELS.items()
    )
    result = _inner_session(tmp_path, f'''
import logging
import dagster as dg
import pytest
from xpm_pipeline.secrets import Secret
from xpm_pipeline_tests.secret_scan import observe

@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{{tmp_path / 'warehouse.db'}}"

{tests}''')
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"1 failed, {len(CHANNELS) - 1} passed" in out, out  # only the failure test fails by itself
    start = out.index("secret scan:")
    report = "\n".join([out[start:].splitlines()[0]] + [line for line in out[start:].splitlines()[1:]
                                                         if line.startswith("  ") and "(sha256 " in line])
    assert "LEAK" in report, out
    for name, (source, _) in CHANNELS.items():
        test = f"test_{name.replace('-', '_').replace('.', '_')}"
        lines = [line for line in report.splitlines() if f"::{test} " in line]
        assert any(source in line for line in lines), (name, lines or report)
        if "shape" not in name and name != "at-rest":
            assert any(fingerprint(values[name]) in line for line in lines), (name, lines)
    for value in values.values():
        assert value not in report  # the report names a hash, never the secret


def test_the_scan_passes_a_session_that_keeps_secrets_masked(tmp_path):
    result = _inner_session(tmp_path, '''
import logging
from xpm_pipeline.secrets import Secret, TokenCipher, redact

def test_inner():
    token = Secret("sbx_at_" + "Z" * 40)
    key = TokenCipher.generate_key()
    logging.getLogger("careful").warning("refreshing with %s", token)  # prints Secret('***')
    logging.getLogger("careful").warning(redact("Authorization: Bearer " + token.reveal()))
    logging.getLogger("careful").warning(redact("POST /connect/token refresh_token=" + token.reveal()))
    logging.getLogger("careful").info("stored %s", TokenCipher(key).encrypt(token))  # ciphertext is fine
    logging.getLogger("careful").info("basic configuration and Bearer error=invalid_token")  # no values
''')
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"secret scan: ([\d,]+) texts scanned, ([\d,]+) secrets checked: none seen anywhere",
                        result.stdout)
    assert summary, result.stdout
    assert int(summary.group(2)) >= 2  # the token and the key


def _stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(oauth_grants)).all()]


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_tokens_are_encrypted_at_rest_and_the_wrong_key_is_refused_in_one_line(request, tmp_path, dialect):
    """After a real `connect`: neither the SQLite file (with its journal) nor the PostgreSQL table holds
    an issued token in clear; with another XPM_TOKEN_KEY, commands that need a token refuse in one line
    naming the variable (never the key), and the stored tokens are untouched."""
    url = request.getfixturevalue("sqlite_url" if dialect == "sqlite" else "postgres_url")
    with SandboxServer(SandboxConfig(size="small", seed=2, tenants=1), port=0) as sandbox:
        env = cli_env(sandbox, tmp_path, XPM_WAREHOUSE_URL=url)
        result = run("connect", "--yes", "--no-sync", env=env)
        assert result.returncode == 0, result.stderr
        issued = [*sandbox.identity.access_tokens, *sandbox.identity.refresh_tokens]
        tenant = sandbox.tenant_ids[0]
        assert len(issued) == 2

        engine = create_engine(url)
        try:
            before = _stored(engine)
            if dialect == "sqlite":
                raw = b"".join(path.read_bytes() for path in tmp_path.glob("warehouse.db*"))
            else:  # every column of every row, as PostgreSQL renders the table
                with engine.connect() as conn:
                    raw = "\n".join(conn.execute(text("SELECT g::text FROM xpm_oauth_grants g")).scalars()).encode()
            assert b"xpm_oauth_grants" in raw or dialect == "postgres"
            assert len(before) == 1 and before[0][3] and before[0][4]  # both tokens are stored ...
            assert b"sbx_at_" not in raw and b"sbx_rt_" not in raw  # ... and neither is readable
            for token in issued:
                assert token.encode() not in raw

            other_key = TokenCipher.generate_key()
            wrong = {**env, "XPM_TOKEN_KEY": other_key}
            refused = run("disconnect", "--tenant", tenant, env=wrong)
            lines = [line for line in refused.stderr.splitlines() if line.strip()]
            assert refused.returncode != 0 and lines == [
                "error: stored tokens cannot be decrypted with XPM_TOKEN_KEY (wrong key? list the old key after "
                "the new one, comma-separated, to rotate)"], refused.stderr
            synced = run("sync", "--tenant", tenant, "--mode", "hourly", env=wrong)
            lines = [line for line in synced.stderr.splitlines() if line.strip()]
            assert synced.returncode != 0 and lines and "Traceback" not in synced.stderr, synced.stderr
            # one line per entity the run tried, each naming the entity and the variable, no API call made
            assert all(re.match(r"error: \w+: TokenKeyError: stored tokens cannot be decrypted with XPM_TOKEN_KEY",
                                line) for line in lines), synced.stderr
            assert other_key not in refused.stderr + synced.stderr + refused.stdout + synced.stdout
            assert _stored(engine) == before  # nothing re-encrypted, revoked or lost

            assert run("sync", "--tenant", tenant, "--mode", "hourly", env=env).returncode == 0  # the right key
        finally:
            engine.dispose()
