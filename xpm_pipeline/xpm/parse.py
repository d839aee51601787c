"""Safe, streaming XML extraction driven by the entity registry.

XPM answers with one document per call, sometimes tens of megabytes (a year of time entries, every
client). We never hold the tree: ``iterparse`` hands over each ``<Time>``/``<Client>`` as it completes,
its values go into typed column lists, and the element is freed at once. Hostile documents are
refused before lxml sees them: any DOCTYPE (the door to entity expansion and external entities),
and lxml itself runs with DTD loading, entity resolution, network access and huge trees off.
"""

from __future__ import annotations

import gc
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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


def _bool(raw: str) -> bool:
    return _TRUE[raw.strip().lower()]


def parse_xpm_date(raw: str) -> date:
    """XPM dates: ``2026-08-14T00:00:00`` in responses, ``2026-08-14`` or ``20260814`` elsewhere."""
    raw = raw.strip()
    if len(raw) == 8 and raw.isdigit():
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    return date.fromisoformat(raw[:10])


def _money(raw: str) -> Decimal:
    value = Decimal(raw.strip())
    if not value.is_finite():
        raise ValueError(raw)
    return value


CONVERTERS: dict[ColumnType, Callable[[str], Any]] = {
    ColumnType.TEXT: str,
    ColumnType.UUID: str.lower,
    ColumnType.INT: int,
    ColumnType.MONEY: _money,
    ColumnType.DATE: parse_xpm_date,
    ColumnType.DATETIME: lambda raw: datetime.fromisoformat(raw.strip()),
    ColumnType.BOOL: _bool,
    ColumnType.YESNO: _bool,
}
_BULK = {ColumnType.INT: int, ColumnType.UUID: str.lower}
# Values that repeat a lot (dates, flags, staff and task UUIDs) are converted once per distinct text.
_MEMOISED = {ColumnType.DATE, ColumnType.BOOL, ColumnType.YESNO, ColumnType.UUID, ColumnType.DATETIME}


def convert_column(entity: Entity, column: Column, raw_values: Iterable[str | None]) -> list:
    """Typed values of one column; empty or absent elements become None."""
    if not isinstance(raw_values, (list, tuple)):
        raw_values = tuple(raw_values)  # scanned more than once below
    convert = CONVERTERS[column.type]
    if column.type is ColumnType.TEXT:
        if "" not in raw_values:
            return list(raw_values)
        return [value or None for value in raw_values]
    if column.type in _BULK and None not in raw_values and "" not in raw_values:
        try:
            return list(map(_BULK[column.type], raw_values))  # C-speed when nothing is missing
        except ValueError:
            pass  # fall through to the value-by-value loop, which names the bad value
    if column.type in _MEMOISED:
        # Convert each distinct text once, then look every value up at C speed. Any failure falls
        # through to the loop below, which names the first bad value in document order.
        memo: dict[str | None, Any] = {"": None, None: None}
        try:
            for raw in set(raw_values):
                if raw not in memo:
                    memo[raw] = convert(raw)
            return list(map(memo.__getitem__, raw_values))
        except (ValueError, KeyError, InvalidOperation, ArithmeticError):
            pass
    memo = {"": None}
    out = []
    append = out.append
    try:
        if column.type in _MEMOISED:
            for raw in raw_values:
                if raw is None:
                    append(None)
                    continue
                value = memo.get(raw, memo)
                if value is memo:
                    value = memo[raw] = convert(raw)
                append(value)
        else:
            for raw in raw_values:
                append(None if not raw else convert(raw))
    except (ValueError, KeyError, InvalidOperation, ArithmeticError):
        bad = raw_values[len(out)] if isinstance(raw_values, (list, tuple)) else "?"
        shown = bad if len(bad) <= 40 else bad[:37] + "..."
        raise XPMParseError(
            f"XPM {entity.element}/{column.path}: {shown!r} is not a valid {column.type.value}"
        ) from None
    return out


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
    elements: frozenset[str] = frozenset()  # the tags directly inside <Response>: was the list there at all?

    def __getitem__(self, entity: str) -> Rows:
        return self.rows[entity]


# --- compiled extraction plans ---------------------------------------------------------------------


class _Plan:
    """A tag trie for one entity: which child elements feed which column, and where children nest.

    Extraction keeps raw text per row; columns are typed in bulk at the end (``_Collector.finish``),
    which is several times cheaper than converting value by value inside the element walk.
    """

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.width = len(entity.columns)
        self.trie: dict[str, Any] = {}
        for index, column in enumerate(entity.columns):
            if column.path:
                self._insert(column.path.split("/"), index)
        self.inherit: list[tuple[int, int]] = []  # (child column index, parent column index)
        for child in children_of(entity.name):
            plan = _plan(child)
            self._insert(child.nested.path.split("/"), plan)
            names = list(entity.column_names)
            child_names = list(child.column_names)
            plan.inherit = [(child_names.index(c), names.index(p)) for c, p in child.nested.inherit]
        # The trie's first level split by kind: column elements, and containers / nested entities.
        self.leaves = {tag: leaf for tag, leaf in self.trie.items() if leaf.__class__ is int}
        self.branches = {tag: leaf for tag, leaf in self.trie.items() if leaf.__class__ is not int}

    def _insert(self, parts: list[str], leaf: Any) -> None:
        node = self.trie
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{self.entity.name}: path conflict at {part}")
        node[parts[-1]] = leaf

    def extract(self, elements, sink: dict[str, list], parent_row: list | None = None) -> None:
        """Append one raw row per element; the first two levels are walked inline (the hot loop).

        Every child element costs lxml a proxy object plus a fresh ``tag`` string, so the loop does as
        little else as it can: one dict probe for the common case (a column's own element), a second
        only for containers (``Job``, ``Task``) and nested entities.
        """
        rows = sink[self.entity.name]
        append = rows.append
        width, inherit = self.width, self.inherit
        leaf_index = self.leaves.get
        branch = self.branches.get
        for element in elements:
            row: list = [None] * width
            pending: list | None = None
            for child in element:
                tag = child.tag
                index = leaf_index(tag)
                if index is not None:
                    row[index] = child.text
                    continue
                node = branch(tag)
                if node is None:
                    continue
                if node.__class__ is dict:
                    for grandchild in child:
                        sub = node.get(grandchild.tag)
                        if sub is None:
                            continue
                        if sub.__class__ is int:
                            row[sub] = grandchild.text
                        else:
                            pending = pending if pending is not None else []
                            if sub.__class__ is dict:
                                self._walk(grandchild, sub, row, pending)
                            else:
                                pending.append((sub, grandchild))
                else:
                    pending = pending if pending is not None else []
                    pending.append((node, child))
            if parent_row is not None:
                for child_index, parent_index in inherit:
                    row[child_index] = parent_row[parent_index]
            append(row)
            if pending:
                for plan, child_element in pending:
                    plan.extract((child_element,), sink, row)

    def _walk(self, element, node: dict, row: list, pending: list) -> None:
        for child in element:
            leaf = node.get(child.tag)
            if leaf is None:
                continue
            if leaf.__class__ is int:
                row[leaf] = child.text
            elif leaf.__class__ is dict:
                self._walk(child, leaf, row, pending)
            else:
                pending.append((leaf, child))


class _Collector:
    """Raw rows per entity (the target and its nested children) until the document ends."""

    def __init__(self, entity: Entity | None) -> None:
        self.entity = entity
        self.plan = _plan(entity) if entity is not None else None
        self.raw: dict[str, list] = {}
        self.top_level: set[str] = set()  # tags seen directly inside <Response>
        if entity is not None:
            self.raw[entity.name] = []
            for child in children_of(entity.name):
                self.raw[child.name] = []

    def add(self, elements) -> None:
        self.plan.extract(elements, self.raw)

    def finish(self) -> dict[str, Rows]:
        rows: dict[str, Rows] = {}
        for name, raw_rows in self.raw.items():
            entity = ENTITIES[name]
            columns = list(zip(*raw_rows)) if raw_rows else [()] * len(entity.columns)
            data = {}
            for column, raw_values in zip(entity.columns, columns):
                values = convert_column(entity, column, raw_values)
                if column.required and None in values:
                    raise XPMParseError(f"XPM {entity.element} without {column.path or column.name}")
                data[column.name] = values
            rows[name] = Rows(entity, data)
        return rows


_PLANS: dict[str, _Plan] = {}


def _plan(entity: Entity) -> _Plan:
    plan = _PLANS.get(entity.name)
    if plan is None:
        plan = _PLANS[entity.name] = _Plan(entity)
    return plan


# --- safety ----------------------------------------------------------------------------------------

_PROLOG_LIMIT = 64 * 1024
_MAX_QUIET_BYTES = 8 << 20  # the most the parser may read without completing a tag or element
_MAX_HELD_ELEMENTS = 1_000_000  # elements held at once in the tree (one entity's, or unknown content)
_FORBIDDEN = re.compile(rb"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_ROOT_START = re.compile(rb"<[A-Za-z_]")


# How a document in another encoding starts (XML 1.0 appendix F: the parser switches on these bytes).
_OTHER_ENCODINGS = (
    (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\x00<", "UTF-32BE"),
    (b"<\x00\x00\x00", "UTF-32LE"), (b"\xfe\xff", "UTF-16BE"), (b"\xff\xfe", "UTF-16LE"), (b"\x00<", "UTF-16BE"),
    (b"<\x00", "UTF-16LE"), (b"\x4c\x6f\xa7\x94", "EBCDIC"), (b"\x2b\x2f\x76", "UTF-7"),
)
_DECLARED = re.compile(rb"""\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([^"']{0,40})["']""")
_UTF8_NAMES = {"utf-8", "utf8", "us-ascii", "ascii"}  # ASCII is UTF-8


def check_charset(content_type: str | None) -> None:
    """Refuse an answer whose ``Content-Type`` names a charset other than UTF-8 (XPM sends UTF-8)."""
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").strip()
            if charset.lower() not in _UTF8_NAMES:
                raise XPMParseError(f"refused an XPM answer in {_shown(charset)} (Content-Type charset; XPM sends UTF-8)")


def _check_encoding(head: bytes, prolog: bytes) -> None:
    """Refuse any document that is not UTF-8 before a parser sees it: in UTF-16, UTF-32, EBCDIC or UTF-7
    (or declaring ISO-8859-1, ...) a DOCTYPE is not the bytes ``<!DOCTYPE`` the prolog check looks for.
    (A NUL after the root element starts is libxml2's to refuse, as malformed.)"""
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    found = next((name for start, name in _OTHER_ENCODINGS if body.startswith(start)), None)
    if found is None and b"\x00" in prolog:
        found = "UTF-16 or UTF-32"  # NUL bytes before the root element: no UTF-8 XML has them
    if found is None:
        declared = _DECLARED.match(body)
        name = declared.group(1).decode("ascii", "replace").strip() if declared else "utf-8"
        if name.lower() not in _UTF8_NAMES:
            found = f"{_shown(name)} (as its XML declaration says)"
    if found is not None:
        raise XPMParseError(f"refused an XML document in {found}: XPM sends UTF-8")


def _shown(name: str) -> str:
    """An encoding name from the answer, safe to show on one line."""
    return "".join(c if c.isprintable() else "?" for c in name[:40]) or "an empty encoding name"


def _check_prolog(head: bytes) -> None:
    """Refuse documents not in UTF-8 (``_check_encoding``), and declarations before the root element:
    XPM never sends any."""
    root = _ROOT_START.search(head)
    prolog = head[: root.start()] if root is not None else head[:_PROLOG_LIMIT]
    _check_encoding(head, prolog)
    if root is None and len(head) >= _PROLOG_LIMIT:
        raise XPMParseError("refused an XML document whose prolog exceeds 64 KiB")
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
    """File-like view over an iterator of byte chunks, with a size cap and a prolog check.

    Also hands out whole chunks (``next_chunk``) for the batched fast path.
    """

    def __init__(self, chunks: Iterable[bytes], max_bytes: int, prolog_checked: bool = False) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self._total = 0
        self._max = max_bytes
        self._prolog_checked = prolog_checked
        self.quiet = 0  # bytes handed to the parser since its last event (reset by _parse_streaming)

    def readable(self) -> bool:
        return True

    def _pull(self) -> bool:
        for chunk in self._chunks:
            if not chunk:
                continue
            self._total += len(chunk)
            if self._total > self._max:
                raise XPMParseError(f"XPM response larger than the {self._max:,}-byte cap; refused")
            self._buffer += chunk
            return True
        return False

    def _ensure_prolog(self) -> None:
        if self._prolog_checked:
            return
        while _ROOT_START.search(self._buffer) is None and len(self._buffer) < _PROLOG_LIMIT:
            if not self._pull():
                break
        _check_prolog(self._buffer)
        self._prolog_checked = True

    def next_chunk(self) -> bytes | None:
        self._ensure_prolog()
        if not self._buffer and not self._pull():
            return None
        out, self._buffer = self._buffer, b""
        return out

    def rest(self, prefix: bytes) -> "_ByteStream":
        """A stream of ``prefix`` followed by what this one has not handed out yet."""
        remaining = self._buffer
        self._buffer = b""
        stream = _ByteStream(self._chunks, self._max, prolog_checked=True)
        stream._buffer = prefix + remaining
        stream._total = self._total
        return stream

    def read(self, size: int = -1) -> bytes:
        self._ensure_prolog()
        while size < 0 or len(self._buffer) < size:
            if not self._pull():
                break
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.quiet += len(out)
        if self.quiet > _MAX_QUIET_BYTES:
            # libxml2 holds a start tag (with all its attributes) or a text node whole until it ends, at
            # many times its size in memory: no XPM answer has a single tag or value this big.
            raise XPMParseError(
                f"refused malformed XML from XPM: more than {_MAX_QUIET_BYTES >> 20} MiB in a single tag or value"
            )
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
    collector = _Collector(entity)
    with _no_gc_pauses():
        return _parse(stream, entity, collector)


@contextmanager
def _no_gc_pauses():
    """Millions of short-lived row lists make no reference cycles; the cyclic GC would only rescan
    them again and again (about a fifth of the parse time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(stream: "_ByteStream", entity: Entity | None, collector: "_Collector") -> Parsed:
    try:
        if entity is not None and entity.list_element and entity.nested is None:
            extras = _parse_batched(stream, entity, collector)
        else:
            extras = _parse_streaming(stream, entity, collector)
    except etree.XMLSyntaxError as exc:
        raise XPMParseError(f"malformed XML from XPM: {_one_line(exc.msg, 300)}") from None
    status = extras.pop("Status", None)
    error = extras.pop("ErrorDescription", None)
    if status is None:
        raise XPMParseError("XPM response has no <Status>")
    if status.strip().upper() != "OK":
        raise ResponseStatusError(_one_line(error or "") or f"XPM returned status {_one_line(status, 40)!r} without a description")
    return Parsed(rows=collector.finish(), extras=extras, elements=frozenset(collector.top_level))


def _one_line(text: str, limit: int = 500) -> str:
    """XPM's text as an error shows it: whitespace collapsed to one line, at most ``limit`` characters."""
    text = " ".join(text[: limit * 4].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_streaming(stream: _ByteStream, entity: Entity | None, collector: _Collector) -> dict[str, str]:
    """The general path: iterparse, capture each entity element at list depth, free it at once."""
    extras: dict[str, str] = {}
    wrappers = {ENVELOPE, entity.list_element} if entity is not None else {ENVELOPE}
    target = entity.element if entity is not None else None
    depth = 0
    capture_depth = None  # depth of the entity element being captured; its insides are left alone
    held, holder = 0, ENVELOPE  # elements started since the tree was last freed, and where they are
    for event, element in etree.iterparse(stream, events=("start", "end"), **_parser_kwargs()):
        if event == "start":
            depth += 1
            held += 1
            if held > _MAX_HELD_ELEMENTS:
                raise XPMParseError(
                    f"refused malformed XML from XPM: more than {_MAX_HELD_ELEMENTS:,} elements inside one <{holder}>"
                )
            if capture_depth is not None:
                continue  # inside an entity: the plan reads it when it ends
            if depth == 1 and element.tag != ENVELOPE:
                raise XPMParseError(f"expected an XPM <Response> document, got <{element.tag}>")
            if depth < 4:
                holder = element.tag if isinstance(element.tag, str) else ENVELOPE
            if element.tag == target:
                parent = element.getparent()
                if parent is not None and parent.tag in wrappers:
                    capture_depth, held, holder = depth, 1, target
            continue
        stream.quiet = 0  # an element ended: the parser is not holding a giant tag or value
        if capture_depth is not None:
            if depth == capture_depth:
                collector.add((element,))
                capture_depth = None
                _free(element)
                held = 0
        elif depth == 3 and element.getparent().tag in wrappers:
            _free(element)  # a list's child that is not an entity: nothing to keep, so nothing piles up
            held = 0
        elif depth == 2:
            tag = element.tag
            collector.top_level.add(tag)
            if tag == "Pagination":
                for link in element.iter("First", "Next", "Previous", "Last"):
                    extras[f"Pagination/{link.tag}"] = (link.text or "").strip()
            elif len(element) == 0 and isinstance(tag, str):
                extras[tag] = element.text or ""
            _free(element)
            held = 0
        depth -= 1
    return extras


_BATCH_BYTES = 1 << 18  # 256 KiB: a batch's tree stays cache-sized (measured: 1 MiB is ~5% slower)
_MAX_ELEMENT_BYTES = 4 << 20  # no XPM entity element comes near this; beyond it, stop buffering
_HEADER_LIMIT = 1 << 20
_XML_DECL = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")
_UTF8 = re.compile(rb"encoding\s*=\s*[\"'](utf-?8|us-ascii|ascii)[\"']", re.IGNORECASE)


def _plain_header(header: bytes) -> bool:
    """The fast path needs a UTF-8 document without namespaces, comments or processing instructions."""
    declaration = _XML_DECL.match(header)
    if declaration and b"encoding" in declaration.group(0) and not _UTF8.search(declaration.group(0)):
        return False
    body = header[declaration.end() :] if declaration else header
    return b"<!" not in body and b"<?" not in body and b"xmlns" not in body


def _parse_batched(stream: _ByteStream, entity: Entity, collector: _Collector) -> dict[str, str]:
    """The fast path for big lists: cut the byte stream after complete entity elements and parse
    each ~256 KiB batch with lxml's full-speed parser (iterparse's per-event cost is most of the bill).

    XPM list entities never nest inside themselves, and markup that could hide a closing tag
    (comments, CDATA, processing instructions) sends the rest of the document down the general path.
    The envelope (header + tail) is parsed on its own, so a truncated document still fails.
    """
    tag = entity.element.encode()
    opening = re.compile(rb"<" + re.escape(tag) + rb"[\s/>]")
    closing = b"</" + tag + b">"
    buffer = b""
    while True:
        found = opening.search(buffer)
        if found:
            break
        chunk = stream.next_chunk()
        if chunk is None or len(buffer) > _HEADER_LIMIT:
            return _parse_streaming(stream.rest(buffer + (chunk or b"")), entity, collector)
        buffer += chunk
    header, rest = buffer[: found.start()], buffer[found.start() :]
    if not _plain_header(header) or b"<!" in rest or b"<?" in rest:
        return _parse_streaming(stream.rest(buffer), entity, collector)
    parser = etree.XMLParser(**_parser_kwargs())
    target = entity.element
    pending = [rest]  # chunks not yet parsed; joined only when a batch is cut
    size = len(rest)
    closed = closing in rest  # a cut is possible: some pending chunk completes an entity element
    exhausted = False
    while True:
        if size > _MAX_ELEMENT_BYTES and not closed:
            # One "entity" bigger than any XPM sends (a giant text node?): the general path parses it
            # incrementally, where libxml2's own limits refuse it, instead of buffering it here.
            return _parse_streaming(stream.rest(header + b"".join(pending)), entity, collector)
        if (size >= _BATCH_BYTES and closed) or exhausted:
            rest = b"".join(pending)
            cut = rest.rfind(closing)
            closed = False
            if cut >= 0:
                cut += len(closing)
                try:
                    batch = etree.fromstring(b"<batch>" + rest[:cut] + b"</batch>", parser)
                except etree.XMLSyntaxError as exc:
                    raise XPMParseError(
                        f"malformed XML from XPM inside <{entity.list_element}>: {_one_line(exc.msg, 300)}"
                    ) from None
                collector.add(batch.iterchildren(target))
                rest = rest[cut:]
            pending, size = [rest], len(rest)
        if exhausted:
            break
        chunk = stream.next_chunk()
        if chunk is None:
            exhausted = True
            continue
        # "<!" or "<?" (comments, CDATA, PIs) could hide a closing tag: take the general path. A memchr
        # for "!" and "?" first: most chunks have neither, and a two-byte search costs 30x more.
        if (
            ((b"!" in chunk or b"?" in chunk) and (b"<!" in chunk or b"<?" in chunk))
            or (pending[-1].endswith(b"<") and chunk[:1] in (b"!", b"?"))
        ):
            return _parse_streaming(stream.rest(header + b"".join(pending) + chunk), entity, collector)
        closed = closed or closing in pending[-1][-len(closing):] + chunk[: len(closing)] or closing in chunk
        pending.append(chunk)
        size += len(chunk)
    rest = b"".join(pending)
    envelope = _ByteStream([header + rest], len(header) + len(rest) + 1, prolog_checked=True)
    return _parse_streaming(envelope, entity, collector)


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
