"""The part of OData's ``$filter`` language the fake 1C understands, as strictly as 1C.

Operators ``eq ne gt ge lt le and or not`` and parentheses (the list 1C documents:
"Технологии интеграции 1С:Предприятия 8.3", chapter on the REST interface, tables 1.2–1.3,
rutlib.com/book/43553/p/47); literals ``'text'`` (quote doubled inside), ``guid'…'``,
``datetime'…'``, numbers, ``true``/``false``; ``cast(guid'…','Catalog_…')`` for
composite-type references (platform 8.3.8.1652, wonderland.v8.1c.ru "Расширение поддержки
протокола OData") and ``substringof('text', Property)``. Anything else is a 400, as is a
property the entity does not have, a composite reference compared without ``cast`` (the
reference §3 trap: a receipt's ``Контрагент`` is not ``Контрагент_Key``), or a GUID
property compared with text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Row = dict[str, Any]
Expr = Callable[[Row], Any]

TOKEN = re.compile(r"""
    \s*(?:
      (?P<prefixed>(?:guid|datetime)'[^']*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<punct>[(),/])
    | (?P<name>[^\W\d][\w]*)
    )""", re.VERBOSE | re.UNICODE)
COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}


class FilterError(ValueError):
    """The filter is not one 1C would run: the fake answers 400 with this message."""


@dataclass(frozen=True)
class Guid:
    value: str


@dataclass(frozen=True)
class Cast:
    value: str
    entity: str


@dataclass(frozen=True)
class Prop:
    name: str


def tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"cannot read $filter at {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class Parser:
    """Recursive descent over the tokens; ``props`` are the entity's properties (name →
    EDM type), ``composite`` those with a ``_Type`` twin."""

    def __init__(self, text: str, props: dict[str, str]) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.props = props
        self.uses_dates = False

    def parse(self) -> Expr:
        expr = self.or_()
        if self.i != len(self.tokens):
            raise FilterError(f"unexpected {self.tokens[self.i][1]!r} in $filter")
        return expr

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise FilterError("$filter ends too early")
        token = self.tokens[self.i]
        if value is not None and token[1] != value:
            raise FilterError(f"expected {value!r}, found {token[1]!r} in $filter")
        self.i += 1
        return token

    def or_(self) -> Expr:
        left = self.and_()
        while self.peek() == "or":
            self.take()
            right = self.and_()
            left = (lambda a, b: lambda r: bool(a(r)) or bool(b(r)))(left, right)
        return left

    def and_(self) -> Expr:
        left = self.not_()
        while self.peek() == "and":
            self.take()
            right = self.not_()
            left = (lambda a, b: lambda r: bool(a(r)) and bool(b(r)))(left, right)
        return left

    def not_(self) -> Expr:
        if self.peek() == "not":
            self.take()
            inner = self.not_()
            return lambda r: not inner(r)
        return self.comparison()

    def comparison(self) -> Expr:
        if self.peek() == "(":
            self.take()
            inner = self.or_()
            self.take(")")
            if self.peek() in COMPARE:  # (expr) eq true
                return self._compare(inner, self.take()[1], self.operand())
            return inner
        left = self.operand()
        if self.peek() in COMPARE:
            op = self.take()[1]
            right = self.operand()
            return self._compare_operands(left, op, right)
        if callable(left):  # a boolean function alone: substringof(...)
            function: Expr = left
            return function
        if isinstance(left, Prop) and self.props.get(left.name) == "Edm.Boolean":
            name = left.name
            return lambda r: bool(r.get(name))
        raise FilterError("a condition must compare two values")

    def operand(self) -> Any:
        kind, value = self.take()
        if kind == "prefixed":
            prefix, _, rest = value.partition("'")
            literal = rest[:-1]
            if prefix == "guid":
                return Guid(literal.lower())
            self.uses_dates = True
            try:
                return datetime.fromisoformat(literal)
            except ValueError:
                raise FilterError(f"bad datetime literal {value}") from None
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            return float(value)
        if kind == "punct" and value == "(":
            raise FilterError("a parenthesis cannot start a value here")
        if kind == "name":
            if value in ("true", "false"):
                return value == "true"
            if self.peek() == "(":
                return self.function(value)
            if value not in self.props:
                raise FilterError(f"property {value!r} not found")
            return Prop(value)
        raise FilterError(f"unexpected {value!r} in $filter")

    def function(self, name: str) -> Any:
        self.take("(")
        args = [self.operand()]
        while self.peek() == ",":
            self.take()
            args.append(self.operand())
        self.take(")")
        if name == "cast" and len(args) == 2 and isinstance(args[0], Guid) and isinstance(args[1], str):
            return Cast(args[0].value, args[1])
        if name == "substringof" and len(args) == 2 and isinstance(args[0], str) \
                and isinstance(args[1], Prop):
            needle, prop = args[0], args[1].name
            return lambda r: needle in str(r.get(prop) or "")
        raise FilterError(f"function {name}() with these arguments is not supported")

    # ------------------------------------------------------------ comparisons

    def _compare_operands(self, left: Any, op: str, right: Any) -> Expr:
        if isinstance(right, Prop) and not isinstance(left, Prop):
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if callable(left):
            return self._compare(left, op, right)
        if not isinstance(left, Prop):
            raise FilterError("a comparison needs a property")
        name = left.name
        kind = self.props[name]
        composite = f"{name}_Type" in self.props and kind == "Edm.String"
        if composite:
            if not isinstance(right, Cast):
                raise FilterError(f"{name} is of a composite type: compare it with "
                                  f"cast(guid'…','<entity>')")
            if op not in ("eq", "ne"):
                raise FilterError(f"{op} is not defined for references")
            want, typ = right.value, f"StandardODATA.{right.entity}"
            hit: Expr = lambda r: (str(r.get(name) or "").lower() == want  # noqa: E731
                                   and r.get(f"{name}_Type") == typ)
            return hit if op == "eq" else (lambda r: not hit(r))
        if kind == "Edm.Guid":
            if not isinstance(right, Guid):
                raise FilterError(f"{name} is a reference: compare it with guid'…'")
            return self._compare(lambda r: str(r.get(name) or "").lower(), op, right.value)
        if kind == "Edm.DateTime":
            if not isinstance(right, datetime):
                raise FilterError(f"{name} is a date: compare it with datetime'…'")
            return self._compare(lambda r: datetime.fromisoformat(str(r.get(name))), op, right)
        if kind == "Edm.Boolean" and not isinstance(right, bool):
            raise FilterError(f"{name} is Boolean: compare it with true or false")
        if kind == "Edm.String" and not isinstance(right, str):
            raise FilterError(f"{name} is a string: compare it with '…'")
        if kind in ("Edm.Double", "Edm.Decimal", "Edm.Int16", "Edm.Int32", "Edm.Int64") \
                and not isinstance(right, float):
            raise FilterError(f"{name} is a number")
        return self._compare(lambda r: r.get(name), op, right)

    @staticmethod
    def _compare(get: Expr, op: str, value: Any) -> Expr:
        def check(row: Row) -> bool:
            mine = get(row)
            if op == "eq":
                return bool(mine == value)
            if op == "ne":
                return bool(mine != value)
            if mine is None:
                return False
            if op == "gt":
                return bool(mine > value)
            if op == "ge":
                return bool(mine >= value)
            if op == "lt":
                return bool(mine < value)
            return bool(mine <= value)
        return check


def compile_filter(text: str, props: dict[str, str]) -> tuple[Expr, bool]:
    """The filter as a predicate over rows, and whether it compares dates."""
    parser = Parser(text, props)
    return parser.parse(), parser.uses_dates
