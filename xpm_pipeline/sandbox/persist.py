"""State file: the whole model plus identity (app credentials, grants, tokens, connections) in a pickle.

Why pickle: the model is a graph of slotted objects with shared references (a time entry points at
its job, task and staff); pickle keeps that graph exactly and loads the large size in seconds, with no
schema to maintain. The file is the sandbox's own private format: load only files you wrote (pickle
executes code from untrusted input). Rate-limit counters, faults and the request log are not saved.

Writes are atomic (temporary file + rename), so a crash mid-save keeps the previous state. The file holds
the app's client secret and live tokens: it is 0600 from its first byte (``mkstemp``), and a folder made
for it is 0700.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from pathlib import Path

from xpm_pipeline.private_files import PRIVATE_FILE, private_dir, tighten

FORMAT = "xpm-sandbox-state/1"


def save(path: str | Path, state, identity, meta: dict) -> Path:
    path = Path(path)
    private_dir(path.parent, tighten_existing=False)
    if path.exists():
        tighten(path, PRIVATE_FILE)  # the rename below replaces it with a private file; say it was not
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump({"format": FORMAT, "meta": meta, "state": state, "identity": identity}, handle,
                            protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        sys.setrecursionlimit(limit)
    return path


def load(path: str | Path):
    """``(state, identity, meta)`` from a file written by ``save``; ValueError when it is not one."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path} is not an XPM sandbox state file ({type(exc).__name__})") from None
    finally:
        sys.setrecursionlimit(limit)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an XPM sandbox state file")
    return payload["state"], payload["identity"], payload.get("meta", {})
