"""Whole-suite secrets scan (issue 8): no token, client secret, token key or Authorization value may
appear in anything the product lets out — logs, exception texts, CLI output, Dagster events.

Loaded for every run through ``addopts = -p xpm_pipeline_tests.secret_scan`` (pyproject). It learns the
secrets as the suite creates them:

- every ``xpm_pipeline.secrets.Secret`` built in the test process (access, refresh and id tokens, client
  secrets, token keys as the product holds them), every ``TokenCipher.generate_key()``, every sandbox's
  client secret and every authorization code its consent page hands out;
- sandbox tokens anywhere, even from sandboxes in other processes: they start ``sbx_at_`` / ``sbx_rt_``.

and reads, as they happen:

- every log record of every logger, from DEBUG up, fully formatted (arguments, tracebacks), with no
  redacting filter in between: the code itself must not log a secret;
- the text of every exception a test saw: failures, and those caught by ``pytest.raises``;
- the stdout and stderr of every CLI process run through ``cli_support.run``;
- every Dagster event stored by an instance in the test process (its message and metadata).

At the end of the session it fails the run if any secret was seen, naming where (test and source) and
a short hash of the secret, never the secret itself. Texts are not kept: each is cut into its
credential-shaped runs, and only those are kept to compare with the secrets known at the end.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

MIN_SECRET = 16  # shorter values (test passwords, "x") are not credentials worth scanning for
_RUN = re.compile(r"[A-Za-z0-9_\-]{%d,}" % MIN_SECRET)
_SANDBOX_TOKEN = re.compile(r"sbx_(?:at|rt)_[A-Za-z0-9_\-]{16,}")
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+(?!\*\*\*)([A-Za-z0-9\-._~+/=]{12,})")


def _core(secret: str) -> str:
    """The longest credential-shaped run of a secret (what ``_RUN`` cuts out of a text containing it)."""
    runs = _RUN.findall(secret)
    return max(runs, key=len) if runs else ""


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:6]


@dataclass
class Scan:
    secrets: set[str] = field(default_factory=set)
    runs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # run -> where seen
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # (where, what, fingerprint)
    texts: int = 0
    where: str = "session"

    def learn(self, value) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET and _core(value):
            self.secrets.add(value)

    def observe(self, source: str, text: str | None) -> None:
        if not text:
            return
        self.texts += 1
        where = f"{self.where} [{source}]"
        for run in _RUN.findall(text):
            self.runs[run].add(where)
        for token in _SANDBOX_TOKEN.findall(text):
            self.findings.append((where, "sandbox token", fingerprint(token)))
        for scheme, value in _AUTH_VALUE.findall(text):
            self.findings.append((where, f"Authorization {scheme} value", fingerprint(value)))

    def leaks(self) -> list[tuple[str, str, str]]:
        """Every run holding a known secret's core: found by the core's first ``MIN_SECRET`` characters
        at each position of each run (one set lookup per character read), then checked in full."""
        found = list(self.findings)
        by_head: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for secret in self.secrets:
            core = _core(secret)
            by_head[core[:MIN_SECRET]].append((core, secret))
        for run, places in self.runs.items():
            for start in range(len(run) - MIN_SECRET + 1):
                for core, secret in by_head.get(run[start:start + MIN_SECRET], ()):
                    if run.startswith(core, start):
                        found.extend((place, "known secret", fingerprint(secret)) for place in sorted(places))
        return found


SCAN = Scan()


def observe(source: str, text: str | None) -> None:
    """For helpers that run things out of process (``cli_support.run``)."""
    SCAN.observe(source, text)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            SCAN.observe(f"log {record.name}", self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is the logging module's problem
            SCAN.observe(f"log {record.name}", str(record.msg))


_HANDLER = _Handler(level=logging.DEBUG)
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
_patches: list[tuple[object, str, object]] = []


def _patch(owner, name: str, wrapper_for) -> None:
    owner = next(klass for klass in owner.__mro__ if name in klass.__dict__)  # where it is defined
    _patches.append((owner, name, owner.__dict__[name]))  # the raw attribute: a staticmethod stays one
    setattr(owner, name, wrapper_for(getattr(owner, name)))


def _exception_texts(exc: BaseException | None) -> str:
    seen, texts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(f"{exc.__class__.__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def _install() -> None:
    from _pytest._code.code import ExceptionInfo
    from dagster import DagsterInstance

    from xpm_pipeline.sandbox.identity import Identity
    from xpm_pipeline.sandbox.server import SandboxServer
    from xpm_pipeline.secrets import Secret, TokenCipher

    def secret_init(original):
        def __init__(self, value):
            original(self, value)
            SCAN.learn(self.reveal())
        return __init__

    def generate_key(original):
        def wrapped():
            key = original()
            SCAN.learn(key)
            return key
        return staticmethod(wrapped)

    def sandbox_enter(original):
        def __enter__(self):
            server = original(self)
            SCAN.learn(self.client_secret)
            return server
        return __enter__

    def decide(original):
        def wrapped(self, form, now):
            location = original(self, form, now)
            for code in re.findall(r"[?&]code=([^&]+)", location or ""):
                SCAN.learn(code)
            return location
        return wrapped

    def fill_unfilled(original):
        def wrapped(self, exc_info):
            original(self, exc_info)
            SCAN.observe("exception caught by pytest.raises", _exception_texts(exc_info[1]))
        return wrapped

    def handle_new_event(original):
        def wrapped(self, event, *args, **kwargs):
            SCAN.observe("dagster event", repr(event))
            return original(self, event, *args, **kwargs)
        return wrapped

    _patch(Secret, "__init__", secret_init)
    _patch(TokenCipher, "generate_key", generate_key)
    _patch(SandboxServer, "__enter__", sandbox_enter)
    _patch(Identity, "decide", decide)
    _patch(ExceptionInfo, "fill_unfilled", fill_unfilled)
    _patch(DagsterInstance, "handle_new_event", handle_new_event)


def pytest_sessionstart(session) -> None:
    _install()
    root = logging.getLogger()
    root.addHandler(_HANDLER)
    session.config._secret_scan_level = root.level
    root.setLevel(logging.DEBUG)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    SCAN.where = item.nodeid
    yield
    SCAN.where = "session"


def pytest_runtest_logreport(report) -> None:
    if report.failed:
        SCAN.observe(f"{report.when} failure", report.longreprtext)


def pytest_sessionfinish(session, exitstatus) -> None:
    root = logging.getLogger()
    root.removeHandler(_HANDLER)
    root.setLevel(getattr(session.config, "_secret_scan_level", logging.WARNING))
    for owner, name, original in reversed(_patches):
        setattr(owner, name, original)
    _patches.clear()
    leaks = SCAN.leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = f"secret scan: {SCAN.texts:,} texts read, {len(SCAN.secrets):,} secrets known"
    if leaks:
        lines = [f"{summary}: {len(leaks)} LEAK(S)"]
        lines += [f"  {what} (sha256 {digest}…) in {where}" for where, what, digest in leaks[:50]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"{summary}: none seen anywhere")
