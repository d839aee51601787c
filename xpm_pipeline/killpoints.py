"""Named places where a test may SIGKILL this process, to prove that a crash there loses nothing.

Code marks a point with ``killpoint("export.after_sending_commit")``. When ``XPM_KILL_AT`` names it
(``name`` or ``name:N`` for the N-th time it is reached; 1 by default), the process kills itself with
SIGKILL right there — no cleanup, no ``finally``, like a power cut or the OOM killer. Unset (always, in
production) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "XPM_KILL_AT"

POINTS = (
    "export.after_claim",
    "export.after_sending_commit",
    "export.after_response",
    "export.before_done_commit",
    "export.after_reconcile_read",
    "sync.after_window_fetch",
    "sync.after_window_load",
    "sync.nightly_before_commit",
    "tokens.before_refresh_call",
    "tokens.after_refresh_answer",
    "tokens.before_refresh_commit",
)
"""Every kill point in the code (tests iterate over these)."""

_seen: Counter[str] = Counter()


def _target() -> tuple[str, int] | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    name, _, nth = raw.partition(":")
    return name, int(nth or 1)


def killpoint(name: str) -> None:
    target = _target()
    if target is None or target[0] != name:
        return
    _seen[name] += 1
    if _seen[name] >= target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
