"""Whole-suite secrets scan (issue 8): no token, client secret, token key or Authorization value may
appear in anything the product lets out — logs, exception texts, CLI output, Dagster events — and no
token may sit in clear in a warehouse file.

Loaded for every run by ``pytest_plugins`` in ``xpm_pipeline_tests/conftest.py`` (and ``-p`` in the
pyproject's ``addopts``). It learns the secrets as the suite creates them, with no hook in product code:

- every ``xpm_pipeline.secrets.Secret`` built in the test process (access and refresh tokens, client
  secrets and token keys as the product holds them), every ``TokenCipher`` key or passphrase, every
  ``TokenCipher.generate_key()``;
- every sandbox identity's client secret (created, or loaded from a state file), every access and
  refresh token it issues and every authorization code its consent page hands out;
- sandbox tokens anywhere, even from sandboxes in other processes: they start ``sbx_at_`` / ``sbx_rt_``;
  and anything shaped like a credential with a real value: ``Authorization: Bearer``/``Basic`` values,
  ``access_token=``/``refresh_token=``/``client_secret=``/``code=`` in a URL or form, and
  ``"access_token": "…"`` (and refresh/id token, client secret) in JSON.

It reads, as they happen:

- every log record of every logger, from DEBUG up (the root logger is set to DEBUG for the session),
  fully formatted (arguments, tracebacks), as it goes to the handlers: loggers that do not propagate
  and Dagster's own run loggers included;
- the text of every exception a test saw: failures, errors and skips, and those caught by
  ``pytest.raises``; and the output each test phase captured (stdout, stderr, log);
- the stdout and stderr of every CLI process run through ``cli_support.run``;
- every Dagster event stored by an instance in the test process (its message and metadata), and, at
  the teardown of the shared ``instance`` fixture, every event its event log holds (``scan_instance``);
- at the teardown of every ``sqlite_url`` warehouse, the raw bytes of the database file (and its
  journal): no sandbox token may be readable there.

Not seen: output of processes the tests start without ``cli_support.run`` (the ``ui`` command's
``dagster dev``, kill-test children, the sandbox CLI, whose banner prints its own client secret by
design), and SQL statements (SQLAlchemy's echo stays at its WARNING default; what reaches the tables is
checked at rest instead). Secrets of a sandbox running only in another process are caught by shape.

At the end of the session it fails the run if any secret was seen, naming where (test and source) and
a 6-character hash of the secret, never the secret itself. Texts are not kept: each is cut into its
credential-shaped runs, and only those are kept to compare with the secrets known at the end.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MIN_SECRET = 16  # shorter values (test passwords, "x") are not credentials worth scanning for
_RUN = re.compile(r"[A-Za-z0-9_\-]{%d,}" % MIN_SECRET)
_SANDBOX_TOKEN = re.compile(r"sbx_(?:at|rt)_[A-Za-z0-9_\-]{16,}")
_BEARER = re.compile(r"(?i)\bbearer\s+(?!\*\*\*)(?![A-Za-z_]+=)([A-Za-z0-9\-._~+/=]{16,})")  # not error="…"
_BASIC = re.compile(r"(?i)\bbasic\s+(?!\*\*\*)([A-Za-z0-9+/]{8,}={0,2})")
_FORM_VALUE = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(access_token|refresh_token|id_token|client_secret|code)=(?!\*\*\*)([A-Za-z0-9_\-.~+/%]{16,})"
)
_JSON_VALUE = re.compile(
    r"""(?i)["'](access_token|refresh_token|id_token|client_secret)["']\s*:\s*["'](?!\*\*\*)([^"'\s]{16,})["']"""
)


def _core(secret: str) -> str:
    """The longest credential-shaped run of a secret (what ``_RUN`` cuts out of a text containing it)."""
    runs = _RUN.findall(secret)
    return max(runs, key=len) if runs else ""


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:6]


def _basic_credentials(value: str) -> bool:
    """Whether a ``Basic`` value is base64 of ``id:secret`` (not an English word after "basic")."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in decoded and decoded.isprintable()


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
        for value in _BEARER.findall(text):
            self.findings.append((where, "Authorization Bearer value", fingerprint(value)))
        for value in _BASIC.findall(text):
            if _basic_credentials(value):
                self.findings.append((where, "Authorization Basic value", fingerprint(value)))
        for pattern, shape in ((_FORM_VALUE, "{}= value"), (_JSON_VALUE, '"{}" JSON value')):
            for name, value in pattern.findall(text):
                self.findings.append((where, shape.format(name.lower()), fingerprint(value)))

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


def scan_instance(instance, source: str = "dagster event log") -> None:
    """Every event a Dagster instance stored, for every run (events written by run processes too):
    message, Dagster event and its metadata, error info."""
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            SCAN.observe(source, repr(entry))


_FORMATTER = logging.Formatter("%(levelname)s %(name)s: %(message)s")
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

    def cipher_init(original):
        def __init__(self, keys):
            for key in (keys or "").split(","):
                SCAN.learn(key.strip())
            original(self, keys)
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

    def identity_create(original):
        def create(cls, *args, **kwargs):
            identity = original(*args, **kwargs)
            SCAN.learn(identity.client_secret)
            return identity
        return classmethod(create)

    def identity_setstate(original):
        def __setstate__(self, state):
            original(self, state)
            SCAN.learn(self.client_secret)
            for table in (self.access_tokens, self.refresh_tokens, self.codes):
                for token in table:
                    SCAN.learn(token)
        return __setstate__

    def issue(original):
        def _issue(self, grant, now):
            answer = original(self, grant, now)
            for name in ("access_token", "refresh_token", "id_token"):
                SCAN.learn(answer.get(name))
            return answer
        return _issue

    def decide(original):
        def wrapped(self, form, now):
            location = original(self, form, now)
            for code in re.findall(r"[?&]code=([^&]+)", location or ""):
                SCAN.learn(code)
            return location
        return wrapped

    def call_handlers(original):
        def callHandlers(self, record):
            try:
                text = _FORMATTER.format(record)
            except Exception:  # noqa: BLE001 - a record that cannot be formatted is the logging module's problem
                text = str(record.msg)
            SCAN.observe(f"log {record.name}", text)
            return original(self, record)
        return callHandlers

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
    _patch(TokenCipher, "__init__", cipher_init)
    _patch(TokenCipher, "generate_key", generate_key)
    _patch(SandboxServer, "__enter__", sandbox_enter)
    _patch(Identity, "create", identity_create)
    _patch(Identity, "__setstate__", identity_setstate)
    _patch(Identity, "_issue", issue)
    _patch(Identity, "decide", decide)
    _patch(logging.Logger, "callHandlers", call_handlers)
    _patch(ExceptionInfo, "fill_unfilled", fill_unfilled)
    _patch(DagsterInstance, "handle_new_event", handle_new_event)


def pytest_sessionstart(session) -> None:
    _install()
    root = logging.getLogger()
    session.config._secret_scan_level = root.level
    root.setLevel(logging.DEBUG)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    SCAN.where = item.nodeid
    yield
    SCAN.where = "session"


def pytest_runtest_logreport(report) -> None:
    if not report.passed and report.longrepr is not None:
        SCAN.observe(f"{report.when} {report.outcome}", report.longreprtext)
    for title, content in report.sections:
        SCAN.observe(title, content)


_TOKEN_PREFIXES = (b"sbx_at_", b"sbx_rt_")


def pytest_fixture_post_finalizer(fixturedef, request) -> None:
    """Tokens at rest: once a test's SQLite warehouse is closed, its file holds no sandbox token."""
    if fixturedef.argname != "sqlite_url" or not fixturedef.cached_result:
        return
    url = fixturedef.cached_result[0]
    if not isinstance(url, str) or not url.startswith("sqlite:///"):
        return
    database = Path(url[len("sqlite:///"):])
    for path in sorted(database.parent.glob(database.name + "*")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        SCAN.texts += 1
        for prefix in _TOKEN_PREFIXES:
            at = data.find(prefix)
            if at >= 0:
                token = data[at:at + 60].decode("ascii", "replace")
                SCAN.findings.append((f"{request.node.nodeid} [at rest in {path.name}]", "sandbox token in clear",
                                      fingerprint(token)))


_FROM_WORKERS: list[dict] = []  # pytest-xdist: each worker's scan, gathered by the controller


def pytest_testnodedown(node, error) -> None:
    """On the xdist controller: a worker finished; keep its scan for the session's verdict."""
    result = getattr(node, "workeroutput", {}).get("secret_scan")
    if result is not None:
        _FROM_WORKERS.append(result)


def pytest_sessionfinish(session, exitstatus) -> None:
    root = logging.getLogger()
    root.setLevel(getattr(session.config, "_secret_scan_level", logging.WARNING))
    for owner, name, original in reversed(_patches):
        setattr(owner, name, original)
    _patches.clear()
    leaks = sorted(set(SCAN.leaks()))
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller reports for the session
        session.config.workeroutput["secret_scan"] = {"texts": SCAN.texts, "secrets": len(SCAN.secrets),
                                                      "leaks": [list(leak) for leak in leaks]}
        return
    texts, secrets = SCAN.texts, len(SCAN.secrets)
    for result in _FROM_WORKERS:
        texts, secrets = texts + result["texts"], secrets + result["secrets"]
        leaks = sorted(set(leaks) | {tuple(leak) for leak in result["leaks"]})
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = f"secret scan: {texts:,} texts scanned, {secrets:,} secrets checked"
    if leaks:
        lines = [f"{summary}: {len(leaks)} LEAK(S)"]
        lines += [f"  {what} (sha256 {digest}…) in {where}" for where, what, digest in leaks[:200]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"{summary}: none seen anywhere")
