"""Safe parsing of XPM write bodies: one bare element, no DOCTYPE, no entities, no network.

A body with a DOCTYPE is refused before lxml sees it (the door to entity expansion and external
entities); lxml then runs with DTD loading, entity resolution and network access off, as the
pipeline's own parser does.
"""

from __future__ import annotations

import re

from lxml import etree

from xpm_pipeline.sandbox.errors import BadRequest

_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
MAX_BODY = 5 * 1024 * 1024


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True, remove_pis=True)


def parse_body(body: bytes, root: str) -> etree._Element:
    """The body's root element, which must be ``<root>``; anything else is a 400."""
    if not body.strip():
        raise BadRequest(f"A <{root}> element is required in the request body")
    if len(body) > MAX_BODY:
        raise BadRequest("Request body too large")
    if _DOCTYPE.search(body) or _ENTITY.search(body):
        raise BadRequest("DOCTYPE declarations are not allowed")
    try:
        element = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"Invalid XML: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    if element.getroottree().docinfo.doctype:
        raise BadRequest("DOCTYPE declarations are not allowed")
    if element.tag != root:
        raise BadRequest(f"Expected a <{root}> element, got <{element.tag}>")
    return element


def scalars(element: etree._Element) -> dict[str, str]:
    """Direct children without children of their own: tag -> text ("" when empty)."""
    out: dict[str, str] = {}
    for child in element:
        if isinstance(child.tag, str) and len(child) == 0:
            out[child.tag] = child.text or ""
    return out


def require(values: dict[str, str], *names: str) -> None:
    missing = [n for n in names if not values.get(n, "").strip()]
    if missing:
        raise BadRequest(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
