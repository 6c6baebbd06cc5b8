"""Table tests for the subscription filter dialect (gateway/policy/filters.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from gateway.events import MAX_NAME_LENGTH, parse_request
from gateway.policy.filters import (
    All,
    AnyOf,
    Exact,
    FilterError,
    MatchAll,
    Not,
    Prefix,
    Suffix,
    attribute_text,
    compile_filters,
)

ORDER: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/shop/eu",
    "type": "com.example.order.created",
    "subject": "invoice-42.pdf",
    "datacontenttype": "application/json",
    "time": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    "tenant": "acme",
    "priority": 5,
    "urgent": True,
}
"""Attributes of a typical event, as `event.get_attributes()` returns them."""


def event(**changes: Any) -> dict[str, Any]:
    """ORDER with `changes` applied; a value of None removes the attribute."""
    attributes = {**ORDER, **changes}
    return {name: value for name, value in attributes.items() if value is not None}


DESIGN_EXAMPLE: list[dict[str, Any]] = [
    {"exact": {"type": "com.example.order.created"}},
    {"any": [{"prefix": {"source": "/shop/"}}, {"suffix": {"subject": ".pdf"}}]},
]

MATCHING = [
    # No filters.
    pytest.param(None, event(), True, id="none-matches-all"),
    pytest.param([], event(), True, id="empty-list-matches-all"),
    # exact
    pytest.param(
        [{"exact": {"type": "com.example.order.created"}}], event(), True, id="exact-type-matches"
    ),
    pytest.param(
        [{"exact": {"type": "com.example.order"}}], event(), False, id="exact-type-partial-no-match"
    ),
    pytest.param(
        [{"exact": {"type": "COM.EXAMPLE.ORDER.CREATED"}}],
        event(),
        False,
        id="exact-is-case-sensitive",
    ),
    pytest.param(
        [{"exact": {"type": "com.example.order.created", "source": "/shop/eu"}}],
        event(),
        True,
        id="exact-two-attributes-both-match",
    ),
    pytest.param(
        [{"exact": {"type": "com.example.order.created", "source": "/shop/us"}}],
        event(),
        False,
        id="exact-two-attributes-one-differs",
    ),
    pytest.param([{"exact": {"subject": ""}}], event(subject=""), True, id="exact-empty-value"),
    pytest.param(
        [{"exact": {"subject": ""}}], event(subject=None), False, id="exact-empty-value-missing"
    ),
    # prefix
    pytest.param([{"prefix": {"source": "/shop/"}}], event(), True, id="prefix-source-matches"),
    pytest.param(
        [{"prefix": {"source": "/shop/"}}],
        event(source="/warehouse/shop/"),
        False,
        id="prefix-source-no-match",
    ),
    pytest.param(
        [{"prefix": {"source": "/shop/eu/extra"}}],
        event(),
        False,
        id="prefix-longer-than-value",
    ),
    pytest.param(
        [{"prefix": {"source": "/shop/", "type": "com.example."}}],
        event(),
        True,
        id="prefix-two-attributes-match",
    ),
    pytest.param(
        [{"prefix": {"source": "/shop/", "type": "org."}}],
        event(),
        False,
        id="prefix-two-attributes-one-differs",
    ),
    # suffix
    pytest.param([{"suffix": {"subject": ".pdf"}}], event(), True, id="suffix-subject-matches"),
    pytest.param(
        [{"suffix": {"subject": ".pdf"}}],
        event(subject="invoice.pdf.zip"),
        False,
        id="suffix-subject-no-match",
    ),
    pytest.param([{"suffix": {"subject": ".PDF"}}], event(), False, id="suffix-is-case-sensitive"),
    # Missing attributes never match exact/prefix/suffix.
    pytest.param(
        [{"exact": {"subject": "invoice-42.pdf"}}],
        event(subject=None),
        False,
        id="exact-missing-attribute",
    ),
    pytest.param(
        [{"prefix": {"subject": "inv"}}], event(subject=None), False, id="prefix-missing-attribute"
    ),
    pytest.param(
        [{"suffix": {"subject": ".pdf"}}], event(subject=None), False, id="suffix-missing-attribute"
    ),
    pytest.param([{"exact": {"region": "eu"}}], event(), False, id="exact-missing-extension"),
    pytest.param(
        [{"not": {"exact": {"region": "eu"}}}],
        event(),
        True,
        id="not-exact-missing-extension-matches",
    ),
    # Extensions, including non-string values compared in string form.
    pytest.param([{"exact": {"tenant": "acme"}}], event(), True, id="exact-extension-matches"),
    pytest.param([{"exact": {"tenant": "acme"}}], event(tenant="other"), False, id="exact-ext-no"),
    pytest.param([{"exact": {"priority": "5"}}], event(), True, id="exact-int-extension"),
    pytest.param([{"exact": {"priority": "6"}}], event(), False, id="exact-int-extension-no"),
    pytest.param([{"prefix": {"priority": "5"}}], event(priority=50), True, id="prefix-int-ext"),
    pytest.param([{"exact": {"urgent": "true"}}], event(), True, id="exact-bool-extension-true"),
    pytest.param(
        [{"exact": {"urgent": "false"}}], event(urgent=False), True, id="exact-bool-ext-false"
    ),
    pytest.param([{"exact": {"urgent": "True"}}], event(), False, id="exact-bool-not-python-str"),
    # time compares as RFC 3339.
    pytest.param(
        [{"exact": {"time": "2024-05-06T07:08:09Z"}}], event(), True, id="exact-time-utc-z"
    ),
    pytest.param([{"prefix": {"time": "2024-05-"}}], event(), True, id="prefix-time-month"),
    pytest.param([{"prefix": {"time": "2024-06-"}}], event(), False, id="prefix-time-month-no"),
    pytest.param(
        [{"exact": {"time": "2024-05-06T07:08:09Z"}}],
        event(time="2024-05-06T07:08:09Z"),
        True,
        id="exact-time-as-string",
    ),
    # Top-level list: all must match.
    pytest.param(
        [{"exact": {"tenant": "acme"}}, {"prefix": {"source": "/shop/"}}],
        event(),
        True,
        id="list-all-match",
    ),
    pytest.param(
        [{"exact": {"tenant": "acme"}}, {"prefix": {"source": "/warehouse/"}}],
        event(),
        False,
        id="list-second-fails",
    ),
    # all
    pytest.param(
        [{"all": [{"exact": {"tenant": "acme"}}, {"suffix": {"subject": ".pdf"}}]}],
        event(),
        True,
        id="all-both-match",
    ),
    pytest.param(
        [{"all": [{"exact": {"tenant": "acme"}}, {"suffix": {"subject": ".csv"}}]}],
        event(),
        False,
        id="all-one-fails",
    ),
    pytest.param([{"all": []}], event(), True, id="all-empty-matches-all"),
    # any
    pytest.param(
        [{"any": [{"exact": {"tenant": "other"}}, {"suffix": {"subject": ".pdf"}}]}],
        event(),
        True,
        id="any-second-matches",
    ),
    pytest.param(
        [{"any": [{"exact": {"tenant": "acme"}}, {"suffix": {"subject": ".csv"}}]}],
        event(),
        True,
        id="any-first-matches",
    ),
    pytest.param(
        [{"any": [{"exact": {"tenant": "other"}}, {"suffix": {"subject": ".csv"}}]}],
        event(),
        False,
        id="any-none-match",
    ),
    pytest.param([{"any": []}], event(), True, id="any-empty-matches-all-like-knative"),
    pytest.param(
        [{"any": [{"exact": {"tenant": "other"}}]}], event(), False, id="any-single-no-match"
    ),
    # not
    pytest.param([{"not": {"exact": {"tenant": "acme"}}}], event(), False, id="not-exact-match"),
    pytest.param(
        [{"not": {"exact": {"tenant": "acme"}}}], event(tenant="other"), True, id="not-exact-no"
    ),
    pytest.param(
        [{"not": {"not": {"prefix": {"source": "/shop/"}}}}],
        event(),
        True,
        id="not-not-is-identity",
    ),
    # Nesting.
    pytest.param(DESIGN_EXAMPLE, event(), True, id="design-example-both-branches"),
    pytest.param(
        DESIGN_EXAMPLE,
        event(source="/warehouse/1"),
        True,
        id="design-example-suffix-branch",
    ),
    pytest.param(
        DESIGN_EXAMPLE,
        event(subject="invoice-42.csv"),
        True,
        id="design-example-prefix-branch",
    ),
    pytest.param(
        DESIGN_EXAMPLE,
        event(source="/warehouse/1", subject="invoice-42.csv"),
        False,
        id="design-example-neither-branch",
    ),
    pytest.param(
        DESIGN_EXAMPLE,
        event(source="/warehouse/1", subject=None),
        False,
        id="design-example-missing-subject",
    ),
    pytest.param(
        DESIGN_EXAMPLE,
        event(type="com.example.order.cancelled"),
        False,
        id="design-example-wrong-type",
    ),
    pytest.param(
        [{"not": {"any": [{"exact": {"tenant": "other"}}, {"prefix": {"source": "/test/"}}]}}],
        event(),
        True,
        id="not-any-none-match",
    ),
    pytest.param(
        [{"not": {"any": [{"exact": {"tenant": "acme"}}, {"prefix": {"source": "/test/"}}]}}],
        event(),
        False,
        id="not-any-one-matches",
    ),
    pytest.param(
        [
            {
                "any": [
                    {
                        "all": [
                            {"exact": {"tenant": "acme"}},
                            {"not": {"suffix": {"subject": ".pdf"}}},
                        ]
                    },
                    {"all": [{"exact": {"tenant": "beta"}}, {"prefix": {"source": "/shop/"}}]},
                ]
            }
        ],
        event(tenant="beta"),
        True,
        id="any-of-alls-second",
    ),
    pytest.param(
        [
            {
                "any": [
                    {
                        "all": [
                            {"exact": {"tenant": "acme"}},
                            {"not": {"suffix": {"subject": ".pdf"}}},
                        ]
                    },
                    {"all": [{"exact": {"tenant": "beta"}}, {"prefix": {"source": "/shop/"}}]},
                ]
            }
        ],
        event(),
        False,
        id="any-of-alls-neither",
    ),
    pytest.param(
        [{"all": [{"any": [{"exact": {"type": "x"}}, {"not": {"exact": {"tenant": "zzz"}}}]}]}],
        event(),
        True,
        id="all-any-not",
    ),
]


@pytest.mark.parametrize(("spec", "attributes", "expected"), MATCHING)
def test_matches(spec: Any, attributes: dict[str, Any], expected: bool) -> None:
    assert compile_filters(spec).matches(attributes) is expected


def test_matches_sdk_event_attributes() -> None:
    sdk_event = CloudEvent(
        {
            "id": "evt-1",
            "source": "/shop/eu",
            "type": "com.example.order.created",
            "specversion": "1.0",
            "subject": "invoice-42.pdf",
            "time": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
            "priority": 5,
        }
    )
    attributes = sdk_event.get_attributes()
    assert compile_filters(DESIGN_EXAMPLE).matches(attributes)
    assert compile_filters([{"exact": {"time": "2024-05-06T07:08:09Z"}}]).matches(attributes)
    assert compile_filters([{"exact": {"priority": "5"}}]).matches(attributes)
    assert not compile_filters([{"exact": {"tenant": "acme"}}]).matches(attributes)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("text", "text", id="string"),
        pytest.param(5, "5", id="int"),
        pytest.param(True, "true", id="bool-true"),
        pytest.param(False, "false", id="bool-false"),
        pytest.param(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), "2024-05-06T07:08:09Z", id="utc"),
        pytest.param(
            datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
            "2024-05-06T07:08:09.123000Z",
            id="utc-fraction",
        ),
        pytest.param(
            datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-06T07:08:09+02:00",
            id="offset",
        ),
    ],
)
def test_attribute_text(value: Any, expected: str) -> None:
    assert attribute_text(value) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(None, MatchAll(), id="none"),
        pytest.param([], MatchAll(), id="empty"),
        pytest.param([{"exact": {"type": "t"}}], Exact((("type", "t"),)), id="single-unwrapped"),
        pytest.param(
            [{"prefix": {"source": "/a"}}, {"suffix": {"subject": ".b"}}],
            All((Prefix((("source", "/a"),)), Suffix((("subject", ".b"),)))),
            id="list-is-all",
        ),
        pytest.param(
            [{"any": [{"exact": {"type": "a"}}, {"exact": {"type": "b"}}]}],
            AnyOf((Exact((("type", "a"),)), Exact((("type", "b"),)))),
            id="any",
        ),
        pytest.param([{"any": []}], MatchAll(), id="empty-any"),
        pytest.param([{"not": {"exact": {"type": "a"}}}], Not(Exact((("type", "a"),))), id="not"),
    ],
)
def test_compiled_tree(spec: Any, expected: object) -> None:
    assert compile_filters(spec) == expected


def test_compiled_filters_are_frozen() -> None:
    compiled = compile_filters([{"exact": {"type": "a"}}])
    with pytest.raises(AttributeError):
        compiled.pairs = ()  # type: ignore[attr-defined]


def test_compiled_filter_does_not_alias_config() -> None:
    config: list[dict[str, Any]] = [{"exact": {"type": "a"}}]
    compiled = compile_filters(config)
    config[0]["exact"]["type"] = "b"
    assert compiled.matches({"type": "a"})
    assert not compiled.matches({"type": "b"})


def test_filter_error_fields() -> None:
    error = FilterError("filters[0].exact", "must map attribute names to strings")
    assert isinstance(error, ValueError)
    assert error.path == "filters[0].exact"
    assert error.message == "must map attribute names to strings"
    assert str(error) == "filters[0].exact: must map attribute names to strings"


def test_custom_root_path() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filters([{"prefx": {}}], path="subscriptions[3].filters")
    assert caught.value.path == "subscriptions[3].filters[0]"


def _nested_not(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"exact": {"type": "a"}}
    for _ in range(depth):
        spec = {"not": spec}
    return spec


INVALID = [
    pytest.param(
        {"exact": {"type": "a"}}, "filters", ["must be a list of filters", "dict"], id="not-a-list"
    ),
    pytest.param("exact", "filters", ["must be a list of filters", "str"], id="string-not-list"),
    pytest.param(
        [{"exact": {"type": "a"}}, {"prefx": {"source": "/a"}}],
        "filters[1]",
        ["unknown filter operator 'prefx'", "use one of exact, prefix, suffix, all, any, not"],
        id="unknown-operator",
    ),
    pytest.param(
        [{"cesql": "type = 'a'"}],
        "filters[0]",
        ["unknown filter operator 'cesql'"],
        id="cesql-unsupported",
    ),
    pytest.param(
        [{}, {}, {"exact": {"type": "a"}, "prefix": {"source": "/a"}}],
        "filters[0]",
        ["exactly one operator, got 0"],
        id="empty-filter",
    ),
    pytest.param(
        [{"exact": {"type": "a"}}, {"exact": {"type": "a"}}, {"exact": {}, "prefix": {}}],
        "filters[2]",
        ["a filter has exactly one operator, got 2 (exact, prefix)"],
        id="two-operators",
    ),
    pytest.param(
        ["exact"],
        "filters[0]",
        ["must be a mapping with one operator", "got str"],
        id="filter-not-mapping",
    ),
    pytest.param(
        [{"exact": ["type", "a"]}],
        "filters[0].exact",
        ["must map attribute names to strings"],
        id="exact-list",
    ),
    pytest.param(
        [{"exact": {}}],
        "filters[0].exact",
        ["must map attribute names to strings"],
        id="exact-empty",
    ),
    pytest.param(
        [{"exact": {"priority": 5}}],
        "filters[0].exact",
        ["must map attribute names to strings", "'priority' is int", "quote it"],
        id="exact-int-value",
    ),
    pytest.param(
        [{"exact": {"urgent": True}}],
        "filters[0].exact",
        ["'urgent' is bool"],
        id="exact-bool-value",
    ),
    pytest.param(
        [{"prefix": {"subject": None}}],
        "filters[0].prefix",
        ["'subject' is null"],
        id="prefix-null-value",
    ),
    pytest.param(
        [{"exact": {"Type": "a"}}],
        "filters[0].exact",
        ["attribute name 'Type' is invalid", "lowercase letters or digits"],
        id="uppercase-attribute",
    ),
    pytest.param(
        [{"suffix": {"my-ext": "a"}}],
        "filters[0].suffix",
        ["attribute name 'my-ext' is invalid"],
        id="dash-attribute",
    ),
    pytest.param(
        [{"exact": {"a" * 65: "a"}}],
        "filters[0].exact",
        ["is invalid", "1-64"],
        id="attribute-too-long",
    ),
    pytest.param(
        [{"exact": {"": "a"}}],
        "filters[0].exact",
        ["attribute name '' is invalid"],
        id="empty-name",
    ),
    pytest.param(
        [{"exact": {1: "a"}}], "filters[0].exact", ["attribute name 1 is invalid"], id="int-name"
    ),
    pytest.param(
        [{"prefix": {"source": ""}}],
        "filters[0].prefix",
        ["value for 'source' must not be empty"],
        id="prefix-empty-value",
    ),
    pytest.param(
        [{"suffix": {"subject": ""}}],
        "filters[0].suffix",
        ["value for 'subject' must not be empty"],
        id="suffix-empty-value",
    ),
    pytest.param(
        [{"all": {"exact": {"type": "a"}}}],
        "filters[0].all",
        ["must be a list of filters", "got dict"],
        id="all-not-list",
    ),
    pytest.param(
        [{"any": None}], "filters[0].any", ["must be a list of filters", "null"], id="any-null"
    ),
    pytest.param(
        [{"not": [{"exact": {"type": "a"}}]}],
        "filters[0].not",
        ["must be a mapping with one operator", "got list"],
        id="not-list",
    ),
    pytest.param(
        [{"not": {}}], "filters[0].not", ["exactly one operator, got 0 (none)"], id="not-empty"
    ),
    pytest.param(
        [{"exact": {"type": "a"}}, {"any": [{"exact": {"type": "a"}}, {"prefix": {"source": 1}}]}],
        "filters[1].any[1].prefix",
        ["'source' is int"],
        id="nested-any-path",
    ),
    pytest.param(
        [{"all": [{"not": {"any": [{"sufix": {"subject": ".pdf"}}]}}]}],
        "filters[0].all[0].not.any[0]",
        ["unknown filter operator 'sufix'"],
        id="deep-nested-path",
    ),
    pytest.param(
        [_nested_not(40)],
        "filters[0]" + ".not" * 32,
        ["nest deeper than 32 levels"],
        id="too-deep",
    ),
]


@pytest.mark.parametrize(("spec", "path", "fragments"), INVALID)
def test_invalid_spec(spec: Any, path: str, fragments: list[str]) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filters(spec)
    assert caught.value.path == path
    for fragment in fragments:
        assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{path}: ")


LONG_NAME = "x" * 20 + "0123456789" * 4 + "tail"  # 64 characters, the most ingress accepts


@pytest.mark.parametrize("name", ["a" * 21, LONG_NAME, "0" * MAX_NAME_LENGTH])
def test_filters_accept_every_name_ingress_accepts(name: str) -> None:
    """An extension ingress stores (up to MAX_NAME_LENGTH characters) can be filtered on, and the
    filter matches the event as it was stored."""
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    (incoming,) = parse_request({**headers, f"ce-{name}": "gold"}, b"")
    assert compile_filters([{"exact": {name: "gold"}}]).matches(incoming.attributes)
    assert not compile_filters([{"suffix": {name: "x"}}]).matches(incoming.attributes)
    assert compile_filters([{"prefix": {name: "go"}}]).matches(incoming.attributes)


def test_filters_refuse_what_ingress_refuses() -> None:
    name = "a" * (MAX_NAME_LENGTH + 1)
    with pytest.raises(FilterError, match=f"1-{MAX_NAME_LENGTH} lowercase"):
        compile_filters([{"exact": {name: "gold"}}])
