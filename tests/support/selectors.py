"""Label and field selectors as the API server evaluates them on list and watch requests.

kmock ignores selectors; an operator that watches Jobs by label would then see every Job, and a test could
pass against the emulator and fail on a real cluster. This is the selector grammar of the Kubernetes docs:
equality (``a=b``, ``a==b``, ``a!=b``), sets (``a in (x,y)``, ``a notin (x)``) and existence (``a``, ``!a``).
Field selectors accept any dotted path with ``=``, ``==``, ``!=`` (a real server allows fewer fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(\s*({_VALUE}(?:\s*,\s*{_VALUE})*)\s*\)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_FIELD = re.compile(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$")


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 Bad Request."""


def _split(selector: str) -> list[str]:
    """Split on the commas that separate requirements, not those inside ``in (a,b)``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def _requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    if match := _SET.match(text):
        key, operator, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY.match(text):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.match(text):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {text!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate over whole objects for a ``labelSelector`` query value."""
    requirements = [_requirement(part) for part in _split(selector or "")]

    def check(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return check


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def field_selector(selector: str | None) -> Predicate:
    """A predicate over whole objects for a ``fieldSelector`` query value."""
    checks: list[Predicate] = []
    for part in _split(selector or ""):
        match = _FIELD.match(part)
        if match is None:
            raise SelectorError(f"invalid field selector: {part!r}")
        path, operator, value = match.group(1), match.group(2), match.group(3).strip()
        if operator == "!=":
            checks.append(lambda obj, p=path, v=value: _lookup(obj, p) != v)
        else:
            checks.append(lambda obj, p=path, v=value: _lookup(obj, p) == v)
    return lambda obj: all(check(obj) for check in checks)
