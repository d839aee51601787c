"""The ``xpm-pipeline`` command.

Every command exits non-zero with a one-line cause on bad input (``error: ...`` on stderr); the
traceback is shown only with ``XPM_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from xpm_pipeline.cli_text import safe, safe_lines
from xpm_pipeline.config import ConfigError
from xpm_pipeline.secrets import RedactingFilter, TokenCipher, TokenKeyError
from xpm_pipeline.xpm.errors import XPMError

app = typer.Typer(
    name="xpm-pipeline",
    help="Keep a SQL warehouse in step with Xero Practice Manager (XPM), and write changes back within XPM's quota.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# emoji=False: outside text such as ":smile:" is shown as written (markup and control characters: cli_text.safe)
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def _mount_sandbox() -> None:
    from xpm_pipeline.sandbox.cli import app as sandbox_app

    app.add_typer(sandbox_app, name="sandbox", help="Run the local XPM sandbox (XPM's wire format, limits and quirks).")


_mount_sandbox()


@app.command()
def keygen() -> None:
    """Print a new key for XPM_TOKEN_KEY (encrypts stored OAuth tokens).

    To rotate, set XPM_TOKEN_KEY="NEW,OLD": new tokens are written with NEW, old ones still read.
    """
    console.print(TokenCipher.generate_key(), soft_wrap=True, highlight=False)


@app.command()
def connect(
    tenant: Annotated[Optional[list[str]], typer.Option("--tenant", help="Keep only this XPM tenant id (repeatable).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Complete consent without a person where the identity server allows it (the sandbox does).")] = False,
    port: Annotated[int, typer.Option(help="Local port for the OAuth callback (0 = any free port).")] = 0,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the consent page in a browser.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for consent.")] = 300,
    initial_sync: Annotated[bool, typer.Option("--sync/--no-sync", help="Run the initial sync of each newly connected organisation now (use --no-sync when a Dagster deployment's tenant sensor will start it).")] = True,
) -> None:
    """Connect XPM organisations: OAuth2 consent with Xero identity, tenant choice, tokens stored encrypted.

    The consenting XPM user needs the privilege "Authorise 3rd Party Full Access"
    ("Connect third-party add-ons" in the newer XPM UI).
    """
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.xpm.connect import connect as run_connect

    from xpm_pipeline.defs.queries import synced_tenants
    from xpm_pipeline.sync.context import INITIAL

    if timeout <= 0:
        raise typer.BadParameter(f"must be a positive number of seconds, got {timeout:g}", param_hint="--timeout")
    if not 0 <= port < 65536:
        raise typer.BadParameter(f"choose 0 (any free port) or 1-65535, got {port}", param_hint="--port")
    runtime = open_runtime()
    try:
        _, connections = run_connect(
            runtime.tokens,
            port=port,
            auto_consent=yes,
            choose_tenants=list(tenant) if tenant else None,
            open_browser=open_browser,
            timeout_seconds=timeout,
            announce=lambda line: err_console.print(safe_lines(line), highlight=False, soft_wrap=True),
        )
        table = Table(title="Connected XPM organisations")
        table.add_column("tenant id")
        table.add_column("name")
        table.add_column("hourly slot")
        slots = {r.tenant_id: r.slot for r in runtime.tokens.tenants(active_only=True)}
        for item in connections:
            table.add_row(safe(item.tenant_id), safe(item.tenant_name), f":{slots.get(item.tenant_id, 0) * 15:02d}")
        console.print(table)
        if initial_sync:
            already = synced_tenants(runtime.engine)
            failed = False
            for item in connections:
                if item.tenant_id in already:
                    console.print(f"{safe(item.tenant_name)}: synced before; the hourly and nightly syncs keep it current")
                    continue
                report = _sync_with_progress(runtime, item.tenant_id, INITIAL)
                _print_sync_report(report)
                failed = failed or not report.ok
            if failed:
                raise typer.Exit(1)
    finally:
        runtime.close()


@app.command()
def disconnect(
    tenant: Annotated[str, typer.Option("--tenant", help="XPM tenant id to disconnect.")],
) -> None:
    """Disconnect one XPM organisation (removes the connection at Xero; warehouse data stays)."""
    from xpm_pipeline.runtime import open_runtime

    runtime = open_runtime()
    try:
        if not runtime.tokens.disconnect(tenant):
            raise typer.BadParameter(f"tenant {tenant} is not connected", param_hint="--tenant")
    finally:
        runtime.close()
    console.print(f"disconnected {safe(tenant)}")


@app.command()
def tenants(
    all_: Annotated[bool, typer.Option("--all", help="Include disconnected tenants.")] = False,
) -> None:
    """List connected XPM organisations with their hourly slot and token state."""
    from xpm_pipeline.runtime import open_runtime

    runtime = open_runtime()
    try:
        records = runtime.tokens.tenants(active_only=not all_)
        table = Table(title="XPM tenants")
        for column in ("tenant id", "name", "slot", "status", "access token expires", "re-consent needed by"):
            table.add_column(column)
        for record in records:
            status = runtime.tokens.grant_status(record.tenant_id)
            table.add_row(
                safe(record.tenant_id),
                safe(record.tenant_name or ""),
                f":{record.slot * 15:02d}",
                safe(record.status if record.status != "active" else status.status),
                str(status.access_expires_at or ""),
                str(status.refresh_expires_at or ""),
            )
        console.print(table)
    finally:
        runtime.close()


@app.command()
def status(
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Only this tenant (default: every connected tenant).")] = None,
) -> None:
    """Per tenant: last run per entity and mode (age, outcome), next scheduled syncs, API calls used today by
    direction, the export queue by priority, and when the tokens need attention."""
    from xpm_pipeline.export.changes import PRIORITY_NAMES
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.status import tenant_status

    runtime = open_runtime()
    try:
        records = {r.tenant_id: r for r in runtime.tokens.tenants(active_only=False)}
        if tenant is not None and tenant not in records:
            raise typer.BadParameter(
                f"unknown tenant {tenant!r}; known: {', '.join(sorted(records)) or 'none'} (run `xpm-pipeline connect`)",
                param_hint="--tenant")
        chosen = [records[tenant]] if tenant else [r for r in records.values() if r.status == "active"]
        if not chosen:
            console.print("no connected tenants: run `xpm-pipeline connect`")
            return
        for record in chosen:
            state = tenant_status(runtime, record)
            _print_status(state, PRIORITY_NAMES)
    finally:
        runtime.close()


def _age(now, moment) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def _print_status(state, priority_names) -> None:
    now, quota, record = state.at, state.quota, state.tenant
    console.print(
        f"[bold]{safe(record.tenant_name)}[/bold] ({safe(record.tenant_id)}) — {safe(record.status)}, hourly slot :{record.slot * 15:02d}",
        highlight=False,
    )
    console.print(
        f"  next hourly sync {state.next_hourly:%Y-%m-%d %H:%M} UTC, next nightly {state.next_nightly:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )
    console.print(
        f"  API calls today: {quota.day_reads} reads, {quota.day_writes} writes of {quota.limits.daily_limit} "
        f"({quota.day_remaining} left; exports may use {quota.write_remaining} more, {quota.limits.daily_reserve} kept "
        f"for syncs); this minute {quota.minute_calls}/{quota.limits.minute_limit}"
        + (f"; blocked until {quota.blocked_until:%H:%M:%S} ({safe(quota.blocked_problem)})" if quota.blocked_until else ""),
        highlight=False,
    )
    waiting = ", ".join(f"{priority_names[p]} {n}" for p, n in sorted(state.queue.open_by_priority.items())) or "empty"
    console.print(
        f"  export queue: {waiting}; dead {state.queue.by_status.get('dead', 0)}, done {state.queue.by_status.get('done', 0)}",
        highlight=False,
    )
    for held in state.held:
        console.print(f"  [red]REMOVAL HELD[/red] on {held.table_name} since {held.held_at:%Y-%m-%d %H:%M} UTC: "
                      f"{safe(held.reason)}", highlight=False, soft_wrap=True)
    if state.tokens is not None:
        tokens = state.tokens
        warn = " [red]re-consent soon[/red]" if tokens.refresh_expires_within(now) else ""
        access = tokens.access_expires_at
        access_text = ("unknown" if access is None
                       else f"expired {_age(now, access)}" if access < now else f"valid until {access:%H:%M} UTC")
        console.print(
            f"  tokens: {safe(tokens.status)}; access token {access_text}; refresh token lapses if unused "
            f"by {tokens.refresh_expires_at:%Y-%m-%d}{warn}"
            + (f"; last error: {safe(tokens.last_error)}" if tokens.last_error else ""),
            highlight=False,
        )
    table = Table(title=f"last runs of {safe(record.tenant_id)}")
    for column in ("entity", "mode", "outcome", "started", "took", "+/~/-", "API calls", "last success", "error"):
        table.add_column(column, overflow="fold")
    for run in state.runs:
        took = f"{(run.ended_at - run.started_at).total_seconds():.1f}s" if run.ended_at else "running"
        table.add_row(
            safe(run.entity), safe(run.mode), safe(run.status), _age(now, run.started_at), took,
            f"{run.rows_inserted}/{run.rows_updated}/{run.rows_deleted}", str(run.api_calls),
            _age(now, run.last_success_at), safe((run.error or "")[:100]),
        )
    if state.runs:
        console.print(table)
    else:
        console.print("  no sync has run yet")


@app.command()
def sync(
    tenant: Annotated[str, typer.Option("--tenant", help="XPM tenant id (see `xpm-pipeline tenants`).")],
    mode: Annotated[str, typer.Option(help="initial | hourly | nightly.")] = "nightly",
    entity: Annotated[Optional[list[str]], typer.Option("--entity", help="Only this entity (repeatable): staff, task, client, client_group, job, timesheet.")] = None,
    resync_all: Annotated[bool, typer.Option("--resync-all", help="Re-read everything of the chosen entities (HowNow's \"re-sync all\").")] = False,
    accept_removals: Annotated[Optional[list[str]], typer.Option("--accept-removals", metavar="TABLE", help="Let this run remove what the removal guard held for TABLE (e.g. xpm_staff; repeatable), after you checked XPM. Recorded with who and when.")] = None,
    accepted_by: Annotated[Optional[str], typer.Option("--accepted-by", help="Who accepts the removals (default: your login name).")] = None,
) -> None:
    """Sync one tenant now: initial (everything), hourly (new time entries and staff) or nightly (changes)."""
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, RESYNC
    from xpm_pipeline.sync.run import steps_for

    if mode not in (INITIAL, HOURLY, NIGHTLY):
        raise typer.BadParameter("choose initial, hourly or nightly", param_hint="--mode")
    if resync_all and mode == HOURLY:
        raise typer.BadParameter("--resync-all re-reads everything; it does not combine with --mode hourly")
    effective = RESYNC if resync_all else mode
    steps_for(effective, entity)  # refuse a bad --entity before connecting
    accepted = _accepted_tables(accept_removals)
    runtime = open_runtime()
    try:
        report = _sync_with_progress(runtime, tenant, effective, entity, accept_removals=accepted,
                                     accepted_by=accepted_by or _login_name())
    finally:
        runtime.close()
    _print_sync_report(report)
    if not report.ok:
        for outcome in report.outcomes:
            if outcome.error:
                err_console.print(f"error: {safe(outcome.entity)}: {safe(outcome.error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _accepted_tables(names: list[str] | None) -> frozenset[str]:
    from xpm_pipeline.sync.guard import table_name

    try:
        return frozenset(table_name(name) for name in names or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--accept-removals") from None


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (containers)
        return f"uid {os.getuid()}"


def _sync_with_progress(runtime, tenant: str, mode: str, entities=None, *, accept_removals=frozenset(),
                        accepted_by: str = ""):
    """Run a sync with a progress bar per step (and per month of time entries on an initial sync)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from xpm_pipeline.sync.context import SyncContext
    from xpm_pipeline.sync.run import run_sync, steps_for

    steps = steps_for(mode, entities)
    with runtime.client(tenant) as client, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        overall = progress.add_task(f"{mode} sync of {safe(tenant)}", total=len(steps))
        detail: dict[str, int] = {}

        def on_step(name: str) -> None:
            done = [s.entity for s in steps].index(name)
            progress.update(overall, completed=done, description=f"{mode} sync of {safe(tenant)}: {safe(name)}")

        def on_progress(what: str, done: int, total: int) -> None:
            if what not in detail:
                detail[what] = progress.add_task(f"  {safe(what)}", total=total)
            progress.update(detail[what], completed=done, total=total)

        ctx = SyncContext(runtime.engine, client, tenant, mode, clock=runtime.clock, progress=on_progress,
                          accept_removals=accept_removals, accepted_by=accepted_by)
        report = run_sync(ctx, entities, on_step=on_step)
        progress.update(overall, completed=len(steps))
    return report


def _print_sync_report(report) -> None:
    table = Table(title=f"{report.mode} sync of {safe(report.tenant_id)}")
    for column in ("entity", "inserted", "updated", "deleted", "unchanged", "API calls", "outcome"):
        table.add_column(column, justify="left" if column in ("entity", "outcome") else "right")
    for outcome in report.outcomes:
        result = outcome.result
        table.add_row(
            safe(outcome.entity), str(result.inserted), str(result.updated + result.revived), str(result.deleted),
            str(result.unchanged), str(outcome.api_calls), "ok" if outcome.ok else "failed",
        )
    console.print(table)


@app.command()
def demo(
    size: Annotated[str, typer.Option(help="Sandbox organisation size: small, medium or large.")] = "medium",
    seed: Annotated[int, typer.Option(help="Seed of the generated organisation.")] = 1,
    home: Annotated[Path, typer.Option(help="Folder for the demo's warehouse and key.")] = Path(".xpm/demo"),
) -> None:
    """A day of a seeded sandbox practice as Dagster runs it: connect, initial, people edit in XPM, hourly, nightly,
    then changes exported back to XPM; prints what each run recorded and the export queue before and after."""
    from xpm_pipeline.demo import run_demo

    if size not in ("small", "medium", "large"):
        raise typer.BadParameter("choose small, medium or large", param_hint="--size")
    run_demo(size=size, seed=seed, home=home, console=console)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface the Dagster UI listens on.")] = "127.0.0.1",
    size: Annotated[str, typer.Option(help="Sandbox organisation size: small, medium or large.")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the generated organisations.")] = 1,
    tenants: Annotated[int, typer.Option(help="Number of sandbox practices (tenants), 1-50.")] = 3,
    minute_limit: Annotated[int, typer.Option(help="Sandbox calls per tenant per minute (XPM: 60).")] = 60,
    home: Annotated[Path, typer.Option(help="Folder for the sandbox state, warehouse, token key and DAGSTER_HOME.")] = Path(".xpm/ui"),
) -> None:
    """Start the XPM sandbox with seeded practices, connect them, and run `dagster dev` on this code location."""
    from xpm_pipeline.defs.dev import UIOptions, run_ui

    if size not in ("small", "medium", "large"):
        raise typer.BadParameter("choose small, medium or large", param_hint="--size")
    if not 1 <= tenants <= 50:
        raise typer.BadParameter("choose 1-50", param_hint="--tenants")
    if not 0 < port < 65536:
        raise typer.BadParameter("choose a port 1-65535", param_hint="--port")
    options = UIOptions(home=home, host=host, port=port, size=size, seed=seed, tenants=tenants, minute_limit=minute_limit)
    code = run_ui(options, announce=lambda line: console.print(safe_lines(line), highlight=False, soft_wrap=True))
    if code:
        raise typer.Exit(code)


def _mount_export() -> None:
    from xpm_pipeline.cli_export import mount

    mount(app)


_mount_export()

_EXPECTED = (ConfigError, TokenKeyError, XPMError, ValueError, OSError)


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-style errors, aborts) of click and of the copy of click that typer vendors (typer >= 0.20)."""
    import click

    errors, aborts = [click.ClickException], [click.exceptions.Abort]  # typer < 0.20, or click used directly
    try:
        from typer import exceptions as typer_exceptions
        from typer._click import exceptions as vendored
    except ImportError:  # an older typer runs on click itself
        pass
    else:
        errors.append(vendored.ClickException)
        aborts.append(typer_exceptions.Abort)
    return tuple(errors), tuple(aborts)


def main() -> None:
    """Console-script entry point: one-line errors instead of tracebacks."""
    level = (os.environ.get("XPM_LOG_LEVEL") or "WARNING").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        err_console.print(f"error: XPM_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level[:40]!r}",
                          highlight=False, soft_wrap=True)
        sys.exit(2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    click_errors, aborts = _click_errors()
    try:
        code = app(standalone_mode=False, prog_name="xpm-pipeline")
    except click_errors as exc:  # usage errors: the message, and where the command's help is
        context = getattr(exc, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        err_console.print(f"error: {safe(exc.format_message())}{safe(hint)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except aborts:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into exit codes
        if os.environ.get("XPM_DEBUG"):
            raise
        expected = isinstance(exc, _EXPECTED) or exc.__class__.__module__.startswith("xpm_pipeline")
        _fail(exc, unexpected=not expected)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(exc: BaseException, unexpected: bool = False) -> None:
    from xpm_pipeline.secrets import redact

    message = redact(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
    prefix = f"unexpected {exc.__class__.__name__}: " if unexpected else ""
    err_console.print(f"error: {prefix}{safe(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
