"""What an infobase publishes, read from its ``$metadata`` (an EDMX document).

Entity and attribute names differ by configuration (БП, УТ, УНФ) and by release
(reference §3: "the fake must serve ``$metadata`` and connectors should read it"), and a
name 1C does not know fails the whole request (HTTP 400). So the plugin asks ``$metadata``
which entity sets are published and which properties each has, and only names those.

The document is OData v3 CSDL: ``EntityType`` elements with ``Property`` children inside a
``Schema`` (namespace ``StandardODATA``), and an ``EntityContainer`` of ``EntitySet``
elements naming their types. A composite-type attribute is two ``Edm.String`` properties,
``X`` and ``X_Type`` (lexema-ecm docs, "Описание протокола OData / Получение данных":
"Составные типы: два свойства типа Edm.String"); a reference is ``X_Key`` (``Edm.Guid``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree import ElementTree

#: Element names are matched by their local part: 1C's EDMX uses the CSDL 2009/11 namespace,
#: other versions of the same document differ only there.


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass(frozen=True)
class Metadata:
    """Published entity sets and their properties (name → EDM type)."""

    sets: dict[str, dict[str, str]]

    @classmethod
    def parse(cls, document: bytes | str) -> Metadata:
        root = ElementTree.fromstring(document)
        types: dict[str, dict[str, str]] = {}
        set_types: dict[str, str] = {}
        for element in root.iter():
            name = _local(element.tag)
            if name == "EntityType":
                props = {_attr(p, "Name"): _attr(p, "Type") for p in element
                         if _local(p.tag) in ("Property", "NavigationProperty")}
                types[_attr(element, "Name")] = props
            elif name == "EntitySet":
                set_types[_attr(element, "Name")] = _attr(element, "EntityType").rsplit(".", 1)[-1]
        return cls({s: types.get(t, {}) for s, t in set_types.items()})

    def published(self, entity: str) -> bool:
        return entity in self.sets

    def has(self, entity: str, prop: str) -> bool:
        return prop in self.sets.get(entity, {})

    def pick(self, entity: str, candidates: Iterable[str]) -> str | None:
        """The first of ``candidates`` that ``entity`` has."""
        return next((c for c in candidates if self.has(entity, c)), None)

    def composite(self, entity: str, prop: str) -> bool:
        """Whether ``prop`` is a composite-type reference (``prop`` + ``prop_Type``)."""
        return self.has(entity, prop) and self.has(entity, f"{prop}_Type")

    def present(self, entity: str, props: Iterable[str]) -> list[str]:
        return [p for p in props if self.has(entity, p)]


def _attr(element: ElementTree.Element, name: str) -> str:
    return element.attrib.get(name, "")
