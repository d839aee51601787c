"""What a change to export looks like, and how a change file is checked before anything is queued.

A change is ``{"kind", "op", "key", "fields"}`` (design.md's ``changes.jsonl``). ``KINDS`` maps each
kind and op to the XPM write it becomes and its priority; ``fields`` use XPM's own element names and
are checked against that write's declaration in ``entities.WRITES`` (required fields, types, dates as
``2026-11-23`` or ``20261123``), so a change that XPM would refuse for its form never spends quota.

The ``key`` is checked for its kind, as it may end up in a URL path: an XPM UUID for timesheet, client
and task updates and deletes (``362de1a5-b4a9-40e9-a7b5-6df4db2726cb``, stored lowercase); a job number
as XPM shows it (``J000309``; practices set their own prefixes, so any letters and digits with
``- _ . ~ : @ ! $ & ' ( ) * + , ;`` and ``=``); for creates, a local id of the same characters naming the
change in the queue (``my-entry-17``). Never ``/ ? # %``, ``..``, whitespace or control characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpm_pipeline.entities import WRITES, WriteOp, write_column
from xpm_pipeline.xpm.parse import CONVERTERS
from xpm_pipeline.xpm.writes import WriteValidationError, validate_fields

MAX_KEY = 100
_LINE_END = re.compile(r"\r\n|\r|\n")  # JSON strings hold none of these as they are
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ChangeKind:
    kind: str
    op: str
    write_op: str
    priority: int  # 1 goes first
    key_field: str | None  # the body field that names the changed thing (updates), else None
    key_form: str  # what the key is: UUID (an XPM UUID), JOB_NUMBER, LOCAL_ID (creates: ours, never sent)

    @property
    def write(self) -> WriteOp:
        return WRITES[self.write_op]


UUID, JOB_NUMBER, LOCAL_ID = "an XPM UUID", "a job number", "a local id"

# Priority: timesheets > job updates > client updates > task updates (then age).
KINDS: dict[tuple[str, str], ChangeKind] = {
    (k.kind, k.op): k
    for k in (
        ChangeKind("timesheet", "create", "time_add", 1, None, LOCAL_ID),
        ChangeKind("timesheet", "update", "time_update", 1, "UUID", UUID),
        ChangeKind("timesheet", "delete", "time_delete", 1, None, UUID),
        ChangeKind("job", "update", "job_update", 2, "ID", JOB_NUMBER),
        ChangeKind("client", "create", "client_add", 3, None, LOCAL_ID),
        ChangeKind("client", "update", "client_update", 3, "UUID", UUID),
        ChangeKind("task", "create", "job_task_add", 4, None, LOCAL_ID),
        ChangeKind("task", "update", "job_task_update", 4, "UUID", UUID),
    )
}
PRIORITY_NAMES = {1: "timesheets", 2: "job updates", 3: "client updates", 4: "task updates"}
KIND_NAMES = tuple(dict.fromkeys(k.kind for k in KINDS.values()))


class ChangeError(ValueError):
    """A change (or a line of a change file) is not valid; the message names the line and field."""


_UUID_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
# What a URL path segment holds literally (RFC 3986 pchar) but "%": letters and digits of any script, and these.
_KEY_PUNCTUATION = frozenset("-_.~:@!$&'()*+,;=")
_KEY_EXAMPLES = {UUID: "362de1a5-b4a9-40e9-a7b5-6df4db2726cb", JOB_NUMBER: "J000309", LOCAL_ID: "my-entry-17"}


def check_key(spec: ChangeKind, key: str) -> str:
    """``key`` as stored (UUIDs lowercase), or ``ValueError`` saying what the kind's key must be."""
    if spec.key_form == UUID:
        if _UUID_KEY.fullmatch(key):
            return key.lower()
    elif key[0].isalnum() and ".." not in key and all(c.isalnum() or c in _KEY_PUNCTUATION for c in key):
        return key
    rule = "" if spec.key_form == UUID else (
        ": letters, digits and - _ . ~ : @ ! $ & ' ( ) * + , ; =, starting with a letter or digit, no '..'")
    raise ValueError(f"{spec.kind} {spec.op} takes {spec.key_form} as key (like {_KEY_EXAMPLES[spec.key_form]}"
                     f"{rule}), got {key[:60]!r}")


@dataclass(frozen=True)
class Change:
    """One validated change. ``fields`` hold XPM element names; for updates the key field is set."""

    kind: str
    op: str
    key: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ChangeKind:
        return KINDS[(self.kind, self.op)]

    @property
    def priority(self) -> int:
        return self.spec.priority

    def payload(self) -> str:
        return json.dumps(dict(self.fields), sort_keys=True, ensure_ascii=False, default=str)


def make_change(raw: Any, *, where: str = "change") -> Change:
    """Check one change given as a dict (from JSON or code); raise ``ChangeError`` naming the field."""
    if not isinstance(raw, Mapping):
        raise ChangeError(f"{where}: expected a JSON object with kind, op, key, fields")
    unknown = sorted(set(raw) - {"kind", "op", "key", "fields"})
    if unknown:
        raise ChangeError(f"{where}: unknown member(s) {', '.join(map(_shown, unknown))} (expected kind, op, key, fields)")
    kind, op = raw.get("kind"), raw.get("op")
    if kind not in KIND_NAMES:
        raise ChangeError(f"{where}: field 'kind' must be one of {', '.join(KIND_NAMES)}, got {kind!r}")
    spec = KINDS.get((kind, op))
    if spec is None:
        ops = ", ".join(o for (k, o) in KINDS if k == kind)
        raise ChangeError(f"{where}: field 'op' for kind {kind} must be one of {ops}, got {op!r}")
    key = raw.get("key")
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise ChangeError(f"{where}: field 'key' must be a non-empty string of at most {MAX_KEY} characters")
    try:
        key = check_key(spec, key.strip())
    except ValueError as exc:
        raise ChangeError(f"{where}: field 'key': {exc}") from None
    fields = raw.get("fields", {})
    if fields is None:
        fields = {}
    if not isinstance(fields, Mapping):
        raise ChangeError(f"{where}: field 'fields' must be an object of XPM element names")
    fields = dict(fields)
    if spec.key_field is not None:
        given = fields.get(spec.key_field)
        if given not in (None, "") and str(given).strip().lower() != key.lower():
            raise ChangeError(
                f"{where}: fields.{spec.key_field} ({given!r}) differs from key ({key!r}); they name the same thing"
            )
        fields[spec.key_field] = key
    try:
        validate_fields(spec.write, fields) if spec.write.body_element else _no_fields(spec, fields)
    except WriteValidationError as exc:
        raise ChangeError(f"{where}: field '{_shown(exc.field or 'fields')}': {_shown(str(exc))}") from None
    if op == "update" and spec.key_field is not None and len(fields) < 2:
        raise ChangeError(f"{where}: field 'fields' has nothing to change (only {spec.key_field})")
    return Change(kind=kind, op=op, key=key, fields=fields)


def _shown(text: str) -> str:
    """A name or message from the file as one printable line (a field name may hold a newline)."""
    return text if text.isprintable() else repr(text)[1:-1]


def typed_values(spec: ChangeKind, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The warehouse columns a change sets, typed as a sync would load them (the key field and fields
    no column holds left out): to show pending edits and to compare with what XPM reads back."""
    formatted = validate_fields(spec.write, dict(fields))
    values: dict[str, Any] = {}
    for name, text in formatted.items():
        if name == spec.key_field:
            continue
        column = write_column(spec.write, name)
        if column is None or column.key:
            continue
        values[column.name] = CONVERTERS[column.type](text) if text != "" else None
    return values


def _no_fields(spec: ChangeKind, fields: dict) -> None:
    if fields:
        raise WriteValidationError(f"{spec.write_op} takes no fields (the key says what to {spec.op})")


def read_change_file(path: str | Path) -> list[Change]:
    """Every change of a JSONL file, all checked first: the first bad line raises ``ChangeError``
    ("changes.jsonl line 7: field 'Minutes': ..."), and then nothing from the file may be queued."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ChangeError(f"{path}: cannot read the change file ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise ChangeError(f"{path}: {size} bytes is more than a change file may hold ({MAX_FILE_BYTES})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChangeError(f"{path}: cannot read the change file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ChangeError(f"{name} line {line}: not UTF-8 text") from None
    # Not str.splitlines(): a JSON string may hold U+2028 or U+0085 as they are, and they end no line here.
    return parse_changes(_LINE_END.split(text), source=name)


class _NotJSON(ValueError):
    """What strict JSON refuses that Python's reader takes: NaN, Infinity, a member given twice."""


def _not_json(constant: str):
    raise _NotJSON(f"{constant} is not a JSON value")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        repeated = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise _NotJSON(f"member {repeated[:60]!r} given twice")
    return members


def parse_changes(lines: Iterable[str], *, source: str = "changes") -> list[Change]:
    changes: list[Change] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            raw = json.loads(line, parse_constant=_not_json, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise ChangeError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise ChangeError(f"{where}: not valid JSON (nested too deeply)") from None
        except _NotJSON as exc:
            raise ChangeError(f"{where}: not valid JSON ({exc})") from None
        except ValueError as exc:  # an integer of thousands of digits
            raise ChangeError(f"{where}: not valid JSON ({str(exc).split(':')[0]})") from None
        changes.append(make_change(raw, where=where))
    if not changes:
        raise ChangeError(f"{source}: no changes in the file")
    return changes
