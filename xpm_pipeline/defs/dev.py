"""``xpm-pipeline ui`` / ``make ui``: the XPM sandbox plus ``dagster dev`` on this code location.

Everything lives under one folder (default ``.xpm/ui``): the sandbox's state (so its practices, tokens
and edits survive a restart), the embedded SQLite warehouse, the token key, and ``DAGSTER_HOME``
(``dagster/``, SQLite storage with the production run coordinator, see ``instance.py``).

Order of events: sandbox up -> OAuth consent by script (tokens stored encrypted in the warehouse) ->
``dagster dev`` with the ``XPM_*`` environment pointing at the sandbox. The tenant sensor then adds
the tenant partitions within a minute and requests each new tenant's initial sync; schedules run the
hourly and nightly flows, and the UI can launch backfills over the tenants.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xpm_pipeline.config import ENDPOINT_OVERRIDES, Settings
from xpm_pipeline.defs.instance import write_local_instance
from xpm_pipeline.private_files import private_dir
from xpm_pipeline.secrets import local_token_key

CODE_LOCATION_MODULE = "xpm_pipeline.definitions"


@dataclass(frozen=True)
class UIOptions:
    home: Path = Path(".xpm/ui")
    host: str = "127.0.0.1"
    port: int = 3000
    size: str = "small"
    seed: int = 1
    tenants: int = 3
    minute_limit: int = 60
    sandbox_port: int = 0


def ui_environment(options: UIOptions, sandbox, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``dagster dev`` (and every run it launches) gets: XPM_* at the sandbox."""
    home = options.home.resolve()
    env = dict(os.environ if base is None else base)
    for name in ("XPM_IDENTITY_URL", *ENDPOINT_OVERRIDES.values(), "XPM_DAILY_LIMIT", "XPM_DAILY_RESERVE"):
        env.pop(name, None)
    env.update({
        "XPM_HOME": str(home),
        "XPM_API_BASE_URL": sandbox.base_url,
        "XPM_CLIENT_ID": sandbox.client_id,
        "XPM_CLIENT_SECRET": sandbox.client_secret,
        "XPM_TOKEN_KEY": local_token_key(home / "token.key"),
        "XPM_WAREHOUSE_URL": f"sqlite:///{(home / 'warehouse.db').as_posix()}",
        "XPM_MINUTE_LIMIT": str(options.minute_limit),
        "DAGSTER_HOME": str(home / "dagster"),
    })
    return env


def dagster_dev_command(options: UIOptions) -> list[str]:
    return [sys.executable, "-m", "dagster", "dev", "-m", CODE_LOCATION_MODULE, "-d", str(Path.cwd()),
            "--host", options.host, "--port", str(options.port)]


def run_ui(options: UIOptions, announce: Callable[[str], None] = print) -> int:
    """Serve until interrupted (Ctrl-C or SIGTERM); returns dagster dev's exit status."""
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
    from xpm_pipeline.xpm.connect import connect

    home = private_dir(options.home)
    state = home / f"sandbox-{options.size}-seed{options.seed}-{options.tenants}t.state"
    sandbox = SandboxServer(
        SandboxConfig(size=options.size, seed=options.seed, tenants=options.tenants, minute_limit=options.minute_limit,
                      state_path=state),
        host="127.0.0.1", port=options.sandbox_port,
    )
    sandbox.start()
    process: subprocess.Popen | None = None

    def forward_sigterm(signum, frame) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # dagster dev stops its webserver, daemon and code servers
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, forward_sigterm)
    try:
        announce(f"XPM sandbox: {sandbox.base_url} ({options.tenants} {options.size} practice(s), seed {options.seed})")
        env = ui_environment(options, sandbox)
        write_local_instance(Path(env["DAGSTER_HOME"]), dequeue_interval_seconds=2)
        runtime = open_runtime(Settings.from_env(env))
        try:
            _, connections = connect(runtime.tokens, auto_consent=True)
        finally:
            runtime.close()
        announce("connected: " + ", ".join(f"{c.tenant_name} ({c.tenant_id})" for c in connections))
        announce(f"Dagster UI: http://{options.host}:{options.port} (DAGSTER_HOME={env['DAGSTER_HOME']}); the tenant "
                 "sensor adds the tenants as partitions within a minute. Ctrl-C stops both.")
        # A shell's background job starts with SIGINT ignored, and an ignored signal stays ignored across
        # exec: dagster dev would then ignore SIGINT and SIGTERM alike and outlive this command. A handler
        # (unlike SIG_IGN) is reset to the default in the child.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        # run from DAGSTER_HOME: a dagster.yaml in the working folder (the repository's production one) would
        # only draw a warning that it is not the instance's
        process = subprocess.Popen(dagster_dev_command(options), env=env, cwd=env["DAGSTER_HOME"])
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process is not None:
            _stop(process)
        sandbox.stop()


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C reached dagster dev too (same process group) and SIGTERM is forwarded as SIGINT: let it shut
    its webserver, daemon and code servers down, and only then insist."""
    steps = (
        (lambda: None, 30),
        (lambda: process.send_signal(signal.SIGINT), 15),
        (process.terminate, 10),  # dagster dev treats SIGTERM like SIGINT
        (process.kill, None),
    )
    for act, timeout in steps:
        if process.poll() is not None:
            return
        act()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
