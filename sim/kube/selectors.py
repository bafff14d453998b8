"""Label and field selectors with the syntax and refusals of the real API server.

Label selectors take both forms (`a=b,c!=d` and `env in (x,y),!canary`); field selectors
take `=`, `==` and `!=` over the fields each kind declares selectable. Anything else is a
400, as on a real cluster, so a client never silently gets an unfiltered list.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sim.kube.errors import bad_request
from sim.kube.kinds import Kind

Predicate = Callable[[dict[str, Any]], bool]

_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def _split_top(expression: str) -> list[str]:
    """Split on commas that are not inside `( )`."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in expression:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str, selector: str) -> str:
    if not _LABEL_KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in "{selector}"')
    return key


LabelTest = Callable[[dict[str, str]], bool]


def _label_in(key: str, values: set[str], negate: bool) -> LabelTest:
    return lambda labels: (labels.get(key) in values) != negate


def _label_eq(key: str, value: str, negate: bool) -> LabelTest:
    return lambda labels: (labels.get(key) == value) != negate


def _label_has(key: str, negate: bool) -> LabelTest:
    return lambda labels: (key in labels) != negate


def _field_eq(path: str, value: str, negate: bool) -> Predicate:
    return lambda obj: (field_value(obj, path) == value) != negate


def label_predicate(selector: str | None) -> Predicate | None:
    """A test for `metadata.labels`, or None when the selector selects everything."""
    if not selector or not selector.strip():
        return None
    tests: list[LabelTest] = []
    for term in _split_top(selector):
        match = _SET_RE.match(term)
        if match:
            key = _check_key(match.group(1), selector)
            values = {v.strip() for v in match.group(3).split(",") if v.strip()}
            tests.append(_label_in(key, values, match.group(2) == "notin"))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            key = _check_key(key.strip(), selector)
            tests.append(_label_eq(key, value.strip(), True))
        elif "=" in term:
            key, _, value = term.replace("==", "=", 1).partition("=")
            key = _check_key(key.strip(), selector)
            tests.append(_label_eq(key, value.strip(), False))
        elif term.startswith("!"):
            key = _check_key(term[1:].strip(), selector)
            tests.append(_label_has(key, True))
        else:
            key = _check_key(term, selector)
            tests.append(_label_has(key, False))

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return matches


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string a field selector compares with (absent fields compare as "")."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_predicate(selector: str | None, kind: Kind) -> Predicate | None:
    """A test over the kind's selectable fields; 400 for a field the kind does not offer."""
    if not selector or not selector.strip():
        return None
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for term in _split_top(selector):
        negate = "!=" in term
        path, _, value = term.replace("!=", "=", 1).replace("==", "=", 1).partition("=")
        path = path.strip()
        if not _ or path not in kind.fields:
            raise bad_request(
                f"field label not supported: {path}" if _ else f'invalid selector: "{term}"'
            )
        expected = value.strip()
        tests.append(_field_eq(path, expected, negate))

    def matches(obj: dict[str, Any]) -> bool:
        return all(test(obj) for test in tests)

    return matches


def combine(*predicates: Predicate | None) -> Predicate | None:
    active = [p for p in predicates if p is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(p(obj) for p in active)


def match_labels(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A structured LabelSelector (`matchLabels` / `matchExpressions`) against labels."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
