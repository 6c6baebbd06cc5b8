"""Subscription filters: which events a subscription receives.

A subscription's `filters` config uses the Knative Eventing "subscriptions API" dialect
(exact, prefix, suffix, all, any, not). Config is checked and compiled into a small tree of
immutable matcher objects once, when the subscription is saved, so a bad filter is rejected
with a precise key path ("filters[1].any[0].prefix") instead of silently matching nothing,
and matching an event on the hot delivery path is only a few string comparisons.

Matching reads the event's attribute mapping (`event.get_attributes()`): context attributes
and extensions alike. An attribute missing from the event (or set to None) never matches
`exact`, `prefix` or `suffix`. Non-string attribute values are compared in their CloudEvents
string form: booleans as "true"/"false", datetimes (`time`) as RFC 3339 with "Z" for UTC,
anything else as `str(value)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from gateway.policy.names import ATTRIBUTE_NAME, MAX_NAME_LENGTH

__all__ = [
    "OPERATORS",
    "All",
    "AnyOf",
    "Exact",
    "Filter",
    "FilterError",
    "MatchAll",
    "Not",
    "Prefix",
    "Suffix",
    "compile_filters",
]

OPERATORS = ("exact", "prefix", "suffix", "all", "any", "not")
"""Filter operators in the order error messages list them."""

MAX_DEPTH = 32
"""Deepest nesting of all/any/not accepted; deeper config is surely a mistake."""

_ATTRIBUTE_NAME = ATTRIBUTE_NAME["1.0"]
"""The names ingress accepts (gateway.events), so every attribute an event can carry can be
filtered on; 1.0's rule, which is 0.3's without the leading letter."""


class Filter(Protocol):
    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """True when the event with these attributes passes the filter."""
        ...


class FilterError(ValueError):
    """Invalid filter config; .path is the key path like 'filters[1].any[0].prefix'."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def attribute_text(value: Any) -> str:
    """The CloudEvents string form of an attribute value, as filters compare it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        text = value.isoformat()
        if value.utcoffset() == timedelta(0) and text.endswith("+00:00"):
            return text[: -len("+00:00")] + "Z"
        return text
    return str(value)


def _lookup(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    return None if value is None else attribute_text(value)


@dataclass(frozen=True, slots=True)
class MatchAll:
    """Matches every event: no filters, or an empty `all`/`any`."""

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Exact:
    """Every attribute equals its value (case-sensitive)."""

    pairs: tuple[tuple[str, str], ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return all(_lookup(attributes, name) == value for name, value in self.pairs)


@dataclass(frozen=True, slots=True)
class Prefix:
    """Every attribute starts with its prefix."""

    pairs: tuple[tuple[str, str], ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        for name, prefix in self.pairs:
            text = _lookup(attributes, name)
            if text is None or not text.startswith(prefix):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Suffix:
    """Every attribute ends with its suffix."""

    pairs: tuple[tuple[str, str], ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        for name, suffix in self.pairs:
            text = _lookup(attributes, name)
            if text is None or not text.endswith(suffix):
                return False
        return True


@dataclass(frozen=True, slots=True)
class All:
    """Every nested filter matches."""

    filters: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return all(child.matches(attributes) for child in self.filters)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one nested filter matches (compiled only for a non-empty `any`)."""

    filters: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return any(child.matches(attributes) for child in self.filters)


@dataclass(frozen=True, slots=True)
class Not:
    """The nested filter does not match."""

    filter: Filter

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return not self.filter.matches(attributes)


def compile_filters(spec: Sequence[Mapping[str, Any]] | None, path: str = "filters") -> Filter:
    """Validate a `filters` list (all must match) and build its matcher; None or [] match all.

    Raises FilterError naming the key path of the first problem and how to fix it.
    """
    if spec is None:
        return MatchAll()
    return _combine(All, _compile_list(spec, path, depth=0))


def _combine(
    operator: Callable[[tuple[Filter, ...]], Filter], filters: tuple[Filter, ...]
) -> Filter:
    """`operator` over `filters`, simplified: none match everything, one is itself."""
    if not filters:
        return MatchAll()
    if len(filters) == 1:
        return filters[0]
    return operator(filters)


def _compile_list(spec: object, path: str, depth: int) -> tuple[Filter, ...]:
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence):
        raise FilterError(path, f"must be a list of filters, got {_kind(spec)}")
    return tuple(_compile_one(item, f"{path}[{index}]", depth) for index, item in enumerate(spec))


def _compile_one(spec: object, path: str, depth: int) -> Filter:
    if depth >= MAX_DEPTH:
        raise FilterError(path, f"filters nest deeper than {MAX_DEPTH} levels; flatten them")
    if not isinstance(spec, Mapping):
        raise FilterError(
            path, f"a filter must be a mapping with one operator ({_choices()}), got {_kind(spec)}"
        )
    if len(spec) != 1:
        keys = ", ".join(str(key) for key in spec)
        raise FilterError(
            path, f"a filter has exactly one operator, got {len(spec)} ({keys or 'none'})"
        )
    ((operator, argument),) = spec.items()
    if operator not in OPERATORS:
        raise FilterError(path, f"unknown filter operator {operator!r}; use one of {_choices()}")
    return _build(str(operator), argument, f"{path}.{operator}", depth)


def _build(operator: str, argument: object, path: str, depth: int) -> Filter:
    if operator == "exact":
        return Exact(_attribute_pairs(argument, path, allow_empty_value=True))
    if operator == "prefix":
        return Prefix(_attribute_pairs(argument, path, allow_empty_value=False))
    if operator == "suffix":
        return Suffix(_attribute_pairs(argument, path, allow_empty_value=False))
    if operator == "all":
        return _combine(All, _compile_list(argument, path, depth + 1))
    if operator == "any":
        # Knative semantics: an empty `any` matches every event (it is not "match nothing").
        return _combine(AnyOf, _compile_list(argument, path, depth + 1))
    return Not(_compile_one(argument, path, depth + 1))


def _attribute_pairs(
    argument: object, path: str, *, allow_empty_value: bool
) -> tuple[tuple[str, str], ...]:
    if not isinstance(argument, Mapping) or not argument:
        raise FilterError(
            path, "must map attribute names to strings, e.g. {type: com.example.order.created}"
        )
    for name, value in argument.items():
        _check_pair(name, value, path, allow_empty_value=allow_empty_value)
    return tuple(argument.items())


def _check_pair(name: object, value: object, path: str, *, allow_empty_value: bool) -> None:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
        raise FilterError(
            path,
            f"attribute name {name!r} is invalid; CloudEvents names are 1-{MAX_NAME_LENGTH} "
            "lowercase letters or digits",
        )
    if not isinstance(value, str):
        raise FilterError(
            path,
            f"must map attribute names to strings; {name!r} is {_kind(value)}, quote it",
        )
    if not value and not allow_empty_value:
        raise FilterError(
            path, f"value for {name!r} must not be empty; give a non-empty string or drop it"
        )


def _choices() -> str:
    return ", ".join(OPERATORS)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return type(value).__name__
