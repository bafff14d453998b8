"""The engine's search language (``?search=`` on a collection), as far as the simulator goes.

A query is conditions ``field=value`` / ``field!=value`` joined by ``and`` / ``or`` (``and``
binds tighter), optionally followed by ``sortby field [asc|desc]`` and ``page N``. A value
may be quoted (``name="web 1"``); ``*`` in a value matches any run of characters, and strings
match case-insensitively, as the engine's (PostgreSQL ``ILIKE``) search does for names.

What the engine would not parse (an empty value, an unbalanced quote, an unknown field, a
dangling operator) raises ``SearchError``; the engine answers that with 400 and its fault
(``Engine`` does the same). Only ``=`` and ``!=`` on the fields given are simulated.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

Getter = Callable[[Any], str | None]

#: The fields every collection's objects can be searched by, when the entity has them.
COMMON = ("id", "name", "status", "description")

_TOKEN = re.compile(r'\s*(?:(?P<quoted>"[^"]*")|(?P<op>!=|<=|>=|=|<|>)|(?P<word>[^\s=!<>"]+))')


class SearchError(ValueError):
    """A search the engine would refuse (it answers 400)."""


def fields_for(cls: type, **extra: Getter) -> dict[str, Getter]:
    """The searchable fields of an entity class: ``COMMON`` ones it has, plus ``extra``."""
    names = {f.name for f in dataclasses.fields(cls)}
    found: dict[str, Getter] = {f: operator.attrgetter(f) for f in COMMON if f in names}
    found.update(extra)
    return found


def _tokens(query: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    query = query.rstrip()
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            raise SearchError(f"unbalanced quote at character {pos}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _pattern(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in value.split("*")), re.IGNORECASE)


Condition = tuple[Getter, bool, re.Pattern[str]]  # getter, negated, pattern


def compile_search(query: str, fields: Mapping[str, Getter]) -> Callable[[list[Any]], list[Any]]:
    """The filter (and sort) of ``query`` over objects with ``fields``; raises ``SearchError``."""
    tokens = _tokens(query)
    groups: list[list[Condition]] = [[]]
    sort: tuple[Getter, bool] | None = None
    i = 0
    expect_condition = bool(tokens)
    while i < len(tokens):
        kind, text = tokens[i]
        word = text.lower() if kind == "word" else ""
        if not expect_condition and word in ("and", "or"):
            if word == "or":
                groups.append([])
            expect_condition, i = True, i + 1
            continue
        if not expect_condition and word in ("sortby", "page"):
            if word == "sortby":
                sort, i = _sortby(tokens, i + 1, fields)
            else:
                if i + 1 >= len(tokens) or not tokens[i + 1][1].isdigit():
                    raise SearchError("page needs a number")
                i += 2
            continue
        if not expect_condition:
            raise SearchError(f"unexpected {text!r}: expected and, or, sortby or page")
        if kind != "word":
            raise SearchError(f"unexpected {text!r}: expected a field name")
        if word not in fields:
            raise SearchError(f"unknown field {text!r}; known: {', '.join(sorted(fields))}")
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "op":
            raise SearchError(f"field {text!r} needs an operator (= or !=)")
        op = tokens[i + 1][1]
        if op not in ("=", "!="):
            raise SearchError(f"operator {op!r} is not supported on {text!r}")
        if i + 2 >= len(tokens) or tokens[i + 2][0] == "op":
            raise SearchError(f"field {text!r} needs a value after {op!r}")
        vkind, value = tokens[i + 2]
        if vkind == "quoted":
            value = value[1:-1]
        groups[-1].append((fields[word], op == "!=", _pattern(value)))
        expect_condition, i = False, i + 3
    if expect_condition and tokens:
        raise SearchError("the search ends with a conjunction")

    def matches(obj: Any) -> bool:
        def one(cond: Condition) -> bool:
            getter, negated, pattern = cond
            got = getter(obj)
            hit = got is not None and pattern.fullmatch(str(got)) is not None
            return hit != negated

        return any(all(one(c) for c in group) for group in groups)

    def apply(items: list[Any]) -> list[Any]:
        kept = [o for o in items if matches(o)] if groups[0] else list(items)
        if sort is not None:
            getter, descending = sort
            kept.sort(key=lambda o: str(getter(o) or "").lower(), reverse=descending)
        return kept

    return apply


def _sortby(
    tokens: list[tuple[str, str]], i: int, fields: Mapping[str, Getter]
) -> tuple[tuple[Getter, bool], int]:
    if i >= len(tokens) or tokens[i][1].lower() not in fields:
        raise SearchError("sortby needs a known field")
    getter = fields[tokens[i][1].lower()]
    i += 1
    descending = False
    if i < len(tokens) and tokens[i][1].lower() in ("asc", "desc"):
        descending = tokens[i][1].lower() == "desc"
        i += 1
    return (getter, descending), i
