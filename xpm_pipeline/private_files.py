"""Folders and files that hold credentials or customer data are the user's alone, from their first byte.

Why: the warehouse holds client data and the encrypted tokens, ``token.key`` decrypts them, a sandbox
state file holds the app's client secret and tokens. A file written with the default mode and chmod-ed
afterwards is readable by others in between (and for good if the process dies in between), so files are
born 0600 (``os.open`` with ``O_CREAT|O_EXCL`` and mode 0600 through ``tempfile.mkstemp``: a umask can
only take bits away) and folders 0700. What already exists with looser permissions is tightened, with one
warning line, and never refused.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

_warned: set[str] = set()
_warned_lock = threading.Lock()


def tighten(path: str | Path, allowed: int) -> None:
    """Take away every permission bit outside ``allowed`` (group and others'); warn once per path."""
    current = stat.S_IMODE(os.stat(path).st_mode)
    if not current & ~allowed:
        return
    try:
        os.chmod(path, current & allowed)
        outcome = f"tightened it to {current & allowed:03o}"
    except OSError as exc:  # not ours to change (another owner, a read-only mount): say so, carry on
        outcome = f"could not tighten it ({exc.strerror or type(exc).__name__})"
    key = str(Path(path).resolve())
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning("%s was open to other users (mode %03o); %s", path, current, outcome)


def private_dir(path: str | Path, *, tighten_existing: bool = True) -> Path:
    """``path`` as a folder: missing folders on the way are created 0700; an existing ``path`` is tightened
    to 0700 unless ``tighten_existing`` is False (a folder the user chose for other things too)."""
    path = Path(path).expanduser()
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:  # another process made it first
            pass
    if tighten_existing:
        tighten(path, PRIVATE_DIR)  # a no-op for a folder made just now
    return path


def create_private_file(path: str | Path, data: bytes = b"") -> bool:
    """Create ``path`` holding ``data``, mode 0600 from its first byte; True if this call created it.

    An existing file is kept (tightened to 0600 if looser). Readers never see a half-written file: the
    data goes to a private temporary file first, and a hard link publishes it only if the name is still
    free, so two processes racing to create it agree on one content.
    """
    path = Path(path)
    if path.exists():
        tighten(path, PRIVATE_FILE)
        return False
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            tighten(path, PRIVATE_FILE)
            return False
        return True
    finally:
        os.unlink(temporary)
