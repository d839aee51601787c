"""Safe, streaming XML extraction driven by the entity registry.

XPM answers with one document per call, sometimes tens of megabytes (a year of time entries, every
client). We never hold the tree: ``iterparse`` hands over each ``<Time>``/``<Client>`` as it completes,
its values go into typed column lists, and the element is freed at once. Hostile documents are
refused before lxml sees them: any DOCTYPE (the door to entity expansion and external entities),
and lxml itself runs with DTD loading, entity resolution, network access and huge trees off.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

from xpm_pipeline.entities import ENTITIES, Column, ColumnType, Entity, children_of
from xpm_pipeline.xpm.errors import XPMParseError

ENVELOPE = "Response"
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # a response beyond 1 GiB is refused rather than read

# --- typed values ----------------------------------------------------------------------------------

_TRUE = {"true": True, "false": False, "yes": True, "no": False}


def _text(raw: str) -> str:
    return raw


def _uuid(raw: str) -> str:
    return raw.strip().lower()


def _int(raw: str) -> int:
    return int(raw)


def _money(raw: str) -> Decimal:
    value = Decimal(raw.strip())
    if not value.is_finite():
        raise ValueError(raw)
    return value


def parse_xpm_date(raw: str) -> date:
    """XPM dates: ``2026-08-14T00:00:00`` in responses, ``2026-08-14`` or ``20260814`` elsewhere."""
    raw = raw.strip()
    if len(raw) == 8 and raw.isdigit():
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    return date.fromisoformat(raw[:10])


def _datetime(raw: str) -> datetime:
    return datetime.fromisoformat(raw.strip())


def _bool(raw: str) -> bool:
    return _TRUE[raw.strip().lower()]


CONVERTERS: dict[ColumnType, Callable[[str], Any]] = {
    ColumnType.TEXT: _text,
    ColumnType.UUID: _uuid,
    ColumnType.INT: _int,
    ColumnType.MONEY: _money,
    ColumnType.DATE: parse_xpm_date,
    ColumnType.DATETIME: _datetime,
    ColumnType.BOOL: _bool,
    ColumnType.YESNO: _bool,
}


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Rows:
    """Typed rows of one entity, held as columns (cheap to build, cheap to hand to pandas)."""

    entity: Entity
    data: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.entity.column_names:
            self.data.setdefault(name, [])

    def __len__(self) -> int:
        return len(self.data[self.entity.columns[0].name])

    def records(self) -> list[dict[str, Any]]:
        names = self.entity.column_names
        return [dict(zip(names, values)) for values in zip(*(self.data[n] for n in names))]

    def column(self, name: str) -> list:
        return self.data[name]

    def extend(self, other: "Rows") -> None:
        for name in self.entity.column_names:
            self.data[name].extend(other.data[name])

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({name: self.data[name] for name in self.entity.column_names})


@dataclass
class Parsed:
    """Everything one response held: rows per entity (parents and nested children) and extras."""

    rows: dict[str, Rows]
    extras: dict[str, str] = field(default_factory=dict)  # top-level scalars, e.g. WebUrl, Pagination

    def __getitem__(self, entity: str) -> Rows:
        return self.rows[entity]


# --- compiled extraction plans ---------------------------------------------------------------------


class _Plan:
    """A tag trie for one entity: which child elements feed which column, and where children nest."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.own = [c for c in entity.columns if c.path]
        self.inherited = entity.nested.inherit if entity.nested else ()
        self.trie: dict[str, Any] = {}
        for index, column in enumerate(self.own):
            self._insert(column.path.split("/"), ("col", index))
        for child in children_of(entity.name):
            self._insert(child.nested.path.split("/"), ("child", _plan(child)))

    def _insert(self, parts: list[str], leaf: tuple) -> None:
        node = self.trie
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{self.entity.name}: path conflict at {part}")
        node[parts[-1]] = leaf

    def extract(self, element, sink: dict[str, Rows], inherited: dict[str, Any] | None = None) -> dict[str, Any]:
        values: list[Any] = [None] * len(self.own)
        pending: list[tuple[_Plan, Any]] = []
        self._walk(element, self.trie, values, pending)
        row: dict[str, Any] = {}
        for index, column in enumerate(self.own):
            raw = values[index]
            row[column.name] = _convert(self.entity, column, raw)
        if inherited:
            row.update(inherited)
        for column in self.entity.columns:
            if column.required and row.get(column.name) is None:
                raise XPMParseError(f"XPM {self.entity.element} without {column.path or column.name}")
        rows = sink.setdefault(self.entity.name, Rows(self.entity))
        for name in self.entity.column_names:
            rows.data[name].append(row.get(name))
        for plan, child_element in pending:
            carried = {child_col: row[parent_col] for child_col, parent_col in plan.inherited}
            plan.extract(child_element, sink, carried)
        return row

    def _walk(self, element, node: dict, values: list, pending: list) -> None:
        for child in element:
            leaf = node.get(child.tag)
            if leaf is None:
                continue
            if isinstance(leaf, dict):
                self._walk(child, leaf, values, pending)
            elif leaf[0] == "col":
                values[leaf[1]] = child.text
            else:
                pending.append((leaf[1], child))


def _convert(entity: Entity, column: Column, raw: str | None):
    if raw is None or raw == "":
        return None
    try:
        return CONVERTERS[column.type](raw)
    except (ValueError, KeyError, InvalidOperation, ArithmeticError):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise XPMParseError(
            f"XPM {entity.element}/{column.path}: {shown!r} is not a valid {column.type.value}"
        ) from None


_PLANS: dict[str, _Plan] = {}


def _plan(entity: Entity) -> _Plan:
    plan = _PLANS.get(entity.name)
    if plan is None:
        plan = _PLANS[entity.name] = _Plan(entity)
    return plan


# --- safety ----------------------------------------------------------------------------------------

_PROLOG_LIMIT = 64 * 1024
_FORBIDDEN = re.compile(rb"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_ROOT_START = re.compile(rb"<[A-Za-z_]")


def _check_prolog(head: bytes) -> None:
    """Refuse declarations before the root element; XPM never sends any."""
    root = _ROOT_START.search(head)
    if root is None:
        if len(head) >= _PROLOG_LIMIT:
            raise XPMParseError("refused an XML document whose prolog exceeds 64 KiB")
        prolog = head
    else:
        prolog = head[: root.start()]
    match = _FORBIDDEN.search(prolog)
    if match:
        raise XPMParseError(f"refused an XML document with a <!{match.group(1).decode().upper()}> declaration")


def _parser_kwargs() -> dict:
    return dict(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


class _ByteStream(io.RawIOBase):
    """File-like view over an iterator of byte chunks, with a size cap and a prolog check."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self._total = 0
        self._max = max_bytes
        self._prolog_checked = False

    def readable(self) -> bool:
        return True

    def _pull(self) -> bool:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return False
        self._total += len(chunk)
        if self._total > self._max:
            raise XPMParseError(f"XPM response larger than the {self._max:,}-byte cap; refused")
        self._buffer += chunk
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._prolog_checked:
            while _ROOT_START.search(self._buffer) is None and len(self._buffer) < _PROLOG_LIMIT:
                if not self._pull():
                    break
            _check_prolog(self._buffer)
            self._prolog_checked = True
        while size < 0 or len(self._buffer) < size:
            if not self._pull():
                break
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


# --- the parser --------------------------------------------------------------------------------------


class ResponseStatusError(XPMParseError):
    """``<Status>ERROR</Status>``: carries XPM's own description."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def parse_response(
    chunks: Iterable[bytes] | bytes,
    entity: Entity | str | None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Parsed:
    """Stream one XPM response and return the rows of ``entity`` (and its nested children).

    Raises ``ResponseStatusError`` for ``<Status>ERROR``; ``XPMParseError`` for anything that is not
    a well-formed, declaration-free XPM document.
    """
    if isinstance(entity, str):
        entity = ENTITIES[entity]
    if isinstance(chunks, (bytes, bytearray)):
        chunks = [bytes(chunks)]
    stream = _ByteStream(chunks, max_bytes)
    plan = _plan(entity) if entity is not None else None
    rows: dict[str, Rows] = {}
    if entity is not None:
        rows[entity.name] = Rows(entity)
        for child in children_of(entity.name):
            rows[child.name] = Rows(child)
    extras: dict[str, str] = {}
    status: str | None = None
    error: str | None = None
    wrappers = {ENVELOPE, entity.list_element} if entity is not None else {ENVELOPE}
    target = entity.element if entity is not None else None
    depth = 0
    capture_depth = None  # depth of the entity element being captured; its insides are left alone
    try:
        context = etree.iterparse(stream, events=("start", "end"), **_parser_kwargs())
        for event, element in context:
            if event == "start":
                depth += 1
                if depth == 1 and element.tag != ENVELOPE:
                    raise XPMParseError(f"expected an XPM <Response> document, got <{element.tag}>")
                if capture_depth is None and element.tag == target:
                    parent = element.getparent()
                    if parent is not None and parent.tag in wrappers:
                        capture_depth = depth
                continue
            # end event
            if capture_depth is not None:
                if depth == capture_depth:
                    plan.extract(element, rows)
                    capture_depth = None
                    _free(element)
                depth -= 1
                continue
            if depth == 2:
                tag = element.tag
                if tag == "Status":
                    status = (element.text or "").strip()
                elif tag == "ErrorDescription":
                    error = (element.text or "").strip()
                elif len(element) == 0 and isinstance(tag, str):
                    extras[tag] = element.text or ""
                elif tag == "Pagination":
                    for link in element.iter("First", "Next", "Previous", "Last"):
                        extras[f"Pagination/{link.tag}"] = (link.text or "").strip()
                _free(element)
            depth -= 1
    except XPMParseError:
        raise
    except etree.XMLSyntaxError as exc:
        raise XPMParseError(f"malformed XML from XPM: {exc.msg}") from None
    if status is None:
        raise XPMParseError("XPM response has no <Status>")
    if status.upper() != "OK":
        raise ResponseStatusError(error or f"XPM returned status {status!r} without a description")
    return Parsed(rows=rows, extras=extras)


def _free(element) -> None:
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def parse_status(body: bytes) -> tuple[str | None, str | None]:
    """(status, error description) of a small response, or (None, None) when it is not XPM XML."""
    try:
        parsed = parse_response(body, None, max_bytes=16 * 1024 * 1024)
    except ResponseStatusError as exc:
        return "ERROR", exc.description
    except XPMParseError:
        return None, None
    return "OK", parsed.extras.get("ErrorDescription")
