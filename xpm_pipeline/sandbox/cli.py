"""``xpm-pipeline sandbox serve``: run the XPM sandbox until SIGINT/SIGTERM.

Options are taken as text and checked here, so every bad value ends in one line
(``error: --port must be ...``) and exit status 2, rather than a usage box. A ``--host`` other than
loopback needs ``--allow-remote``: the /_sandbox/ admin interface would answer other machines.
"""

from __future__ import annotations

import signal
import sys
import threading

import typer

from xpm_pipeline.sandbox.config import DAY_WINDOWS, SIZES, TIME_FILTERS, SandboxConfig

app = typer.Typer(help="A local XPM server (same paths, XML, limits and quirks) for tests and demos.",
                  no_args_is_help=True, rich_markup_mode=None)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _int(name: str, raw: str, low: int, high: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        _fail(f"{name} must be an integer, got {raw!r}")
    if value < low or (high is not None and value > high):
        _fail(f"{name} must be {low}-{high}, got {value}" if high is not None else f"{name} must be >= {low}, got {value}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        _fail(f"{name} must be one of {'|'.join(choices)}, got {raw!r}")
    return raw


@app.callback()
def _group() -> None:
    """XPM sandbox commands."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: str = typer.Option("8765", "--port", help="TCP port; 0 picks a free one."),
    size: str = typer.Option("small", "--size", help="Seeded organisation size: small | medium | large."),
    seed: str = typer.Option("1", "--seed", help="Data seed; the same seed gives the same data."),
    tenants: str = typer.Option("1", "--tenants", help="Number of practices (tenants), 1-50."),
    daily_limit: str = typer.Option("10000", "--daily-limit", help="Calls per tenant per day."),
    minute_limit: str = typer.Option("60", "--minute-limit", help="Calls per tenant in any 60 s."),
    state: str = typer.Option("", "--state", help="State file: loaded on start if present, saved on exit."),
    day_window: str = typer.Option("rolling", "--day-window", help="Daily limit window: rolling | fixed (UTC day)."),
    time_filter: str = typer.Option("date", "--time-filter", help="time.api/list filters by: date | created."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a --host other than loopback; the "
                                      "/_sandbox/ admin interface (tokens, clock, faults) then answers any client."),
) -> None:
    """Serve XPM, identity and the /_sandbox/ admin interface on one origin until interrupted."""
    from xpm_pipeline.sandbox.admin import is_loopback
    from xpm_pipeline.sandbox.server import SandboxServer

    remote = not is_loopback(host)
    if remote and not allow_remote:
        _fail(f"--host {host!r} is not a loopback address: other machines could mint tokens, move the clock and "
              "inject faults through /_sandbox/; add --allow-remote if that is meant")

    config = SandboxConfig(
        size=_choice("--size", size, SIZES),
        seed=_int("--seed", seed, 0),
        tenants=_int("--tenants", tenants, 1, 50),
        daily_limit=_int("--daily-limit", daily_limit, 1),
        minute_limit=_int("--minute-limit", minute_limit, 1),
        day_window=_choice("--day-window", day_window, DAY_WINDOWS),
        time_filter=_choice("--time-filter", time_filter, TIME_FILTERS),
        state_path=state or None,
    )
    port_number = _int("--port", port, 0, 65535)
    try:
        sandbox = SandboxServer(config, host=host, port=port_number, allow_remote=allow_remote)
        sandbox.start()
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port_number}: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(str(exc))
    stop = threading.Event()

    def _stop(signum, frame) -> None:  # noqa: ARG001
        stop.set()

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _stop)
    except ValueError:  # not the main thread (embedded use): Ctrl-C arrives as KeyboardInterrupt instead
        pass
    if remote:
        print(f"warning: the sandbox listens on {host!r} and its /_sandbox/ admin interface (tokens, clock, faults) "
              "answers every client that can reach it", file=sys.stderr, flush=True)
    try:
        print(sandbox.banner(), flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if config.state_path:
        print(f"XPM sandbox: state saved to {config.state_path}", file=sys.stderr, flush=True)


def main() -> None:  # pragma: no cover - python -m xpm_pipeline.sandbox.cli
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
