"""Well-formed lies: an HTTP 200 ``<Status>OK</Status>`` answer whose list says something false.

A client that trusts such an answer can wipe data (a list that is suddenly empty reads as "everything
was deleted"), so the ``lie_*`` faults (``faults.LIE_KINDS``) run the call, then rewrite its document
here. One transformation serves every entity, driven by ``xpm_pipeline.entities``:

* a *list answer* holds an entity's ``list_element`` (``<Jobs>``, ``<StaffList>``) of its ``element``
  items (``<Job>``, ``<Staff>``): the lie is about that list;
* a *get answer* holds one entity ``element`` (``<Group>``): ``lie_missing_list`` removes that element;
  the other lies are about the entity's nested lists (group members, job tasks, client contacts) or,
  for an entity without any (staff, task, time), about the element itself as a one-item list (then
  ``lie_empty_list`` also removes it, ``lie_cut`` keeps it, ``lie_duplicate`` repeats it).

Any other answer (an ERROR document, a write answer holding no entity) is sent as it is.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable

from lxml import etree

from xpm_pipeline.entities import ENTITIES, Entity, children_of

TOP_LEVEL = tuple(e for e in ENTITIES.values() if e.nested is None and e.list_element)
BY_LIST_ELEMENT = {e.list_element: e for e in TOP_LEVEL}
BY_ELEMENT = {e.element: e for e in TOP_LEVEL}
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


@dataclass
class Elsewhere:
    """How to see the same call from another tenant (``lie_other_tenant``)."""

    run: Callable[[str, str, str], bytes | None]  # (tenant, rel path, query) -> OK document or None
    call: tuple[str, str]  # this call's (rel path, query)
    tenants: list[str]  # the other tenants, preferred one first
    today: date


@dataclass
class Target:
    entity: Entity
    node: etree._Element  # the list element, or the get answer's entity element
    lists: list[tuple[etree._Element, str]]  # (container, item tag) the lie is about

    @property
    def is_get(self) -> bool:
        return self.node.tag == self.entity.element


def find_target(root: etree._Element) -> Target | None:
    """The list (or the one entity) a ``<Response>`` is about, from the registry's element names."""
    for child in root:
        entity = BY_LIST_ELEMENT.get(child.tag)
        if entity is not None:
            return Target(entity, child, [(child, entity.element)])
    for child in root:
        entity = BY_ELEMENT.get(child.tag)
        if entity is not None:
            lists = []
            for nested in children_of(entity.name):
                wrapper, item = nested.nested.path.split("/")
                container = child.find(wrapper)
                if container is not None:
                    lists.append((container, item))
            return Target(entity, child, lists or [(root, entity.element)])
    return None


def items(container: etree._Element, tag: str) -> list[etree._Element]:
    return [c for c in container if c.tag == tag]


def keep_count(n: int, fraction: float) -> int:
    """ceil(n * fraction), exact for decimal fractions (30 * 0.1 is 3, not 4)."""
    return math.ceil(n * Decimal(repr(fraction)))


def tell(kind: str, params: dict, raw: bytes, elsewhere: Elsewhere) -> bytes:
    """``raw`` (an OK document) rewritten to tell the ``kind`` of lie; unchanged when it holds no entity."""
    root = etree.fromstring(raw, PARSER)
    target = find_target(root) if root.findtext("Status") == "OK" else None
    if target is None:
        return raw
    if kind == "lie_missing_list":
        root.remove(target.node)
    elif kind == "lie_other_tenant":
        _other_tenant(root, target, elsewhere)
    else:
        for container, tag in target.lists:
            found = items(container, tag)
            if kind == "lie_empty_list":
                drop = found
            elif kind == "lie_cut":
                drop = found[keep_count(len(found), params["fraction"]):]
            elif kind == "lie_duplicate":
                for item in found:
                    item.addnext(copy.deepcopy(item))
                drop = []
            else:
                raise ValueError(f"not a lie: {kind}")
            for item in drop:
                container.remove(item)
    return etree.tostring(root, encoding="utf-8", xml_declaration=False)


def _other_tenant(root: etree._Element, target: Target, elsewhere: Elsewhere) -> None:
    """Replace the list (or the one entity) with another tenant's: the first tenant that has one."""
    first = None
    fetch = _get_elsewhere if target.is_get else _list_elsewhere
    for tenant in elsewhere.tenants:
        found = fetch(target, tenant, elsewhere)
        if found is not None and (target.is_get or len(found)):
            root.replace(target.node, found)
            return
        first = found if first is None else first
    if first is not None:  # no other tenant has any: the first other tenant's (empty) list
        root.replace(target.node, first)
    elif target.is_get:  # nobody else has such an entity
        root.remove(target.node)


def _document_target(raw: bytes | None) -> Target | None:
    if raw is None:
        return None
    root = etree.fromstring(raw, PARSER)
    return find_target(root) if root.findtext("Status") == "OK" else None


def _list_elsewhere(target: Target, tenant: str, elsewhere: Elsewhere) -> etree._Element | None:
    found = _document_target(elsewhere.run(tenant, *elsewhere.call))
    return found.node if found is not None and found.entity is target.entity and not found.is_get else None


def _get_elsewhere(target: Target, tenant: str, elsewhere: Elsewhere) -> etree._Element | None:
    """The other tenant's first entity of this kind, fetched by the same get path with its key swapped."""
    entity = target.entity
    query = "detailed=true"
    if entity.range_required:
        query += f"&from={(elsewhere.today - timedelta(days=364)):%Y%m%d}&to={elsewhere.today:%Y%m%d}"
    listed = _document_target(elsewhere.run(tenant, entity.list_path, query))
    if listed is None:
        return None
    first = next(iter(items(listed.node, entity.element)), None)
    if first is None:
        return None
    rel, _query = elsewhere.call
    head, _, key = rel.rpartition("/")
    by = next((c.tag for c in target.node if (c.text or "").strip().lower() == key.strip().lower()), None)
    other_key = first.findtext(by) if by else None
    if not other_key:
        return first
    fetched = _document_target(elsewhere.run(tenant, f"{head}/{other_key}", ""))
    return fetched.node if fetched is not None and fetched.is_get else first
