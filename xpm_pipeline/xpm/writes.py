"""Request bodies for XPM writes, built from the ``WRITES`` declarations in ``entities``.

One bare element, fields in XPM's documented order, values in XPM's formats (dates ``YYYYMMDD``,
times ``HH:MM``). Bad input is refused here, before any quota is spent.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from lxml import etree

from xpm_pipeline.entities import WRITES, WriteField, WriteOp
from xpm_pipeline.xpm.parse import parse_xpm_date

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# What XML 1.0 cannot carry (NUL, control characters, lone surrogates, U+FFFE/U+FFFF): lxml refuses to
# build a body with them, so a change holding one must be refused before it is queued.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class WriteValidationError(ValueError):
    """A change cannot be sent as given; the message names the field (also in ``field``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _format(op: WriteOp, spec: WriteField, value: Any) -> str:
    where = f"{op.name}.{spec.name}"
    if value is None:
        return ""
    if spec.kind == "date":
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, date):
            return value.strftime("%Y%m%d")
        try:
            return parse_xpm_date(str(value)).strftime("%Y%m%d")
        except ValueError:
            raise WriteValidationError(
                f"{where}: {value!r} is not a date (use 2026-11-23 or 20261123)", spec.name
            ) from None
    if spec.kind == "int":
        if isinstance(value, bool):
            raise WriteValidationError(f"{where}: expected whole minutes, got {value!r}", spec.name)
        try:
            number = int(str(value).strip())
        except ValueError:
            raise WriteValidationError(f"{where}: expected whole minutes, got {value!r}", spec.name) from None
        return str(number)
    if spec.kind == "money":
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise WriteValidationError(f"{where}: {value!r} is not an amount", spec.name) from None
        if not amount.is_finite():
            raise WriteValidationError(f"{where}: {value!r} is not an amount", spec.name)
        return f"{amount.quantize(Decimal('0.01'))}"
    if spec.kind == "time":
        text = str(value).strip()
        if not _TIME.match(text):
            raise WriteValidationError(f"{where}: {value!r} is not a time of day HH:MM", spec.name)
        return text
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, (dict, list, tuple, set)):
        shape = "dict" if isinstance(value, dict) else "list"
        raise WriteValidationError(f"{where}: expected text, got a JSON {shape}", spec.name)
    text = str(value)
    bad = _NOT_XML.search(text)
    if bad:
        raise WriteValidationError(
            f"{where}: character U+{ord(bad.group()):04X} at position {bad.start() + 1} cannot be sent to XPM", spec.name
        )
    return text


def validate_fields(op: WriteOp | str, fields: dict[str, Any]) -> dict[str, str]:
    """Check and format ``fields`` for ``op``; returns the XPM text of each field."""
    if isinstance(op, str):
        try:
            op = WRITES[op]
        except KeyError:
            raise WriteValidationError(f"unknown XPM write {op!r}") from None
    fields = {name: value for name, value in fields.items() if value is not None}
    known = {f.name: f for f in op.fields}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise WriteValidationError(
            f"{op.name}: unknown field(s) {', '.join(unknown)}; XPM takes {', '.join(known)}", unknown[0]
        )
    for spec in op.fields:
        if spec.required and (fields.get(spec.name) is None or str(fields.get(spec.name)).strip() == ""):
            raise WriteValidationError(f"{op.name}: {spec.name} is required", spec.name)
    if op.one_of:
        present = [group for group in op.one_of if all(fields.get(name) not in (None, "") for name in group)]
        if len(present) != 1:
            choices = " or ".join("+".join(group) for group in op.one_of)
            raise WriteValidationError(f"{op.name}: give exactly one of {choices}", "/".join(op.one_of[0]))
    return {name: _format(op, known[name], value) for name, value in fields.items()}


def build_body(op: WriteOp | str, fields: dict[str, Any]) -> bytes:
    """The XML body XPM expects for ``op`` (fields in documented order)."""
    if isinstance(op, str):
        op = WRITES[op]
    if op.body_element is None:
        if fields:
            raise WriteValidationError(f"{op.name} takes no body")
        return b""
    formatted = validate_fields(op, fields)
    root = etree.Element(op.body_element)
    for spec in op.fields:
        if spec.name in formatted:
            etree.SubElement(root, spec.name).text = formatted[spec.name]
    return etree.tostring(root, encoding="utf-8")


def write_path(op: WriteOp | str, key: str | None) -> str:
    """``op``'s URL path with ``key`` in it as one quoted path segment: whatever a key holds (``/``, ``?``,
    ``#``, ``..``), it names one thing and never another path or a query. Keys are checked when a change
    is queued; this holds even for one that was not."""
    if isinstance(op, str):
        op = WRITES[op]
    if "{key}" not in op.path:
        return op.path
    if not key:
        raise WriteValidationError(f"{op.name} needs a key")
    segment = quote(key, safe="")
    if segment.strip(".") == "":  # "." and ".." are no names: a client would resolve them to another path
        segment = segment.replace(".", "%2E")
    return op.path.format(key=segment)
