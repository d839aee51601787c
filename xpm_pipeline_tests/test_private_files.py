"""Files with credentials or customer data (XPM_HOME, the SQLite warehouse, token.key, sandbox state files)
are private from their first byte, even under a umask that lets everything through (``os.umask(0)``)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from xpm_pipeline.config import Settings
from xpm_pipeline.defs.dev import UIOptions, ui_environment
from xpm_pipeline.private_files import create_private_file
from xpm_pipeline.runtime import open_runtime
from xpm_pipeline.sandbox import persist
from xpm_pipeline.secrets import TokenCipher, local_token_key
from xpm_pipeline.warehouse.db import make_engine

SANDBOX = SimpleNamespace(base_url="http://127.0.0.1:4321", client_id="cid", client_secret="secret")


def settings_for(home: Path, token_key: str | None = None) -> Settings:
    return Settings.from_env({"XPM_HOME": str(home), "XPM_TOKEN_KEY": token_key or TokenCipher.generate_key(),
                              "XPM_CLIENT_ID": "cid", "XPM_CLIENT_SECRET": "secret"})


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def hostile_umask():
    """Nothing is masked: every file is created with exactly the mode its creator asked for."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def modes_seen(monkeypatch, tmp_path):
    """The mode of every file under tmp_path at every os.open / chmod / link / replace the code makes: a
    file written with the default mode and chmod-ed later shows its open moment here."""
    seen: list[tuple[str, str, int]] = []

    def record(what: str, paths) -> None:
        for path in paths:
            if tmp_path in path.parents and path.is_file():
                seen.append((what, path.name, mode(path)))

    def watch(name: str, original):
        def watched(*args, **kwargs):
            paths = [Path(os.fsdecode(a)) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
            record(name, paths)  # before: what chmod is about to fix, what link is about to publish
            result = original(*args, **kwargs)
            record(f"after {name}", paths)  # after: a file os.open just made, a name link just gave
            return result

        monkeypatch.setattr(os, name, watched)

    for name in ("open", "chmod", "link", "replace", "rename"):
        watch(name, getattr(os, name))
    return seen


def open_to_others(seen) -> list:
    return [entry for entry in seen if entry[2] & 0o077]


def test_the_token_key_is_0600_from_its_first_byte(tmp_path, hostile_umask, modes_seen):
    home = tmp_path / "ui"
    home.mkdir(mode=0o700)
    env = ui_environment(UIOptions(home=home), SANDBOX, base={})
    assert mode(home / "token.key") == 0o600
    TokenCipher(env["XPM_TOKEN_KEY"])  # a usable key, written whole
    assert ("after link", "token.key", 0o600) in modes_seen
    assert open_to_others(modes_seen) == []
    assert not [entry for entry in modes_seen if entry[0] == "chmod"]  # born private, never chmod-ed into it


def test_warehouse_file_and_its_wal_files_are_0600_before_sqlite_opens_them(tmp_path, hostile_umask):
    database = tmp_path / "new" / "folder" / "warehouse.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert mode(database) == 0o600  # the file exists, private, before SQLite's first open
        assert mode(database.parent) == 0o700 and mode(database.parent.parent) == 0o700
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        siblings = {p.name: mode(p) for p in database.parent.iterdir()}
        assert {"warehouse.db", "warehouse.db-wal", "warehouse.db-shm"} <= set(siblings)
        assert set(siblings.values()) == {0o600}, siblings
    finally:
        engine.dispose()


def test_xpm_home_made_by_the_first_run_is_0700(tmp_path, hostile_umask):
    home = tmp_path / ".xpm"
    open_runtime(settings_for(home)).close()
    assert mode(home) == 0o700 and mode(home / "warehouse.db") == 0o600


def test_loose_existing_home_warehouse_and_key_are_tightened_with_one_warning_each(tmp_path, caplog):
    home = tmp_path / ".xpm"
    home.mkdir()
    os.chmod(home, 0o755)
    key, warehouse = home / "token.key", home / "warehouse.db"
    key.write_text(TokenCipher.generate_key())
    warehouse.touch()
    for path in (key, warehouse):
        os.chmod(path, 0o644)
    settings = settings_for(home, local_token_key(key))
    with caplog.at_level(logging.WARNING, logger="xpm_pipeline"):
        for _ in range(2):  # a second run warns no more
            open_runtime(settings).close()
            local_token_key(key)
    assert (mode(home), mode(key), mode(warehouse)) == (0o700, 0o600, 0o600)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(w.split(" was open")[0] for w in warnings) == sorted(map(str, (home, key, warehouse)))
    assert all("\n" not in w and "tightened it to" in w for w in warnings)


def test_sandbox_state_file_is_0600_in_a_0700_folder(tmp_path, hostile_umask, modes_seen, caplog):
    path = tmp_path / "states" / "sandbox.state"
    persist.save(path, {"tenants": []}, None, {"size": "small"})
    assert (mode(path.parent), mode(path)) == (0o700, 0o600)
    assert open_to_others(modes_seen) == []
    os.chmod(path, 0o644)  # a state file left loose by an older version: saved private again, and said so
    with caplog.at_level(logging.WARNING, logger="xpm_pipeline"):
        persist.save(path, {"tenants": []}, None, {"size": "small"})
    assert mode(path) == 0o600 and any("sandbox.state was open to other users" in r.getMessage()
                                       for r in caplog.records)


def test_creating_keeps_what_exists(tmp_path, hostile_umask):
    path = tmp_path / "token.key"
    assert create_private_file(path, b"first") is True
    assert create_private_file(path, b"second") is False
    assert path.read_bytes() == b"first" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token.key"]  # no temporary file left behind
