"""The create-time egress check (DESIGN "Safety"): which destination URLs a subscription may use.

Denied by default: loopback, link-local (cloud metadata) and unspecified addresses, and anything
that is not http(s) with a host. Private ranges are allowed by default at this stage.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gateway.config.settings import ConfigError, parse_config
from gateway.destinations.egress import EgressDenied, EgressPolicy
from gateway.resources.subscriptions import validate_settings
from tests.conftest import (
    LOOPBACK_EGRESS,
    assert_problem,
    make_settings,
    run_gateway,
    subscription,
)

REFUSED_BY_DEFAULT = [
    pytest.param("http://127.0.0.1/", "127.0.0.1", id="loopback-v4"),
    pytest.param("http://127.9.9.9:8080/x", "127.9.9.9", id="loopback-v4-range"),
    pytest.param("http://[::1]/", "::1", id="loopback-v6"),
    pytest.param("http://localhost/", "'localhost'", id="localhost"),
    pytest.param("https://LOCALHOST:8443/", "'localhost'", id="localhost-upper"),
    pytest.param("http://10.1.2.3/", "10.1.2.3", id="rfc1918-10"),
    pytest.param("http://192.168.1.10/", "192.168.1.10", id="rfc1918-192-168"),
    pytest.param("http://172.16.0.1/", "172.16.0.1", id="rfc1918-172-16"),
    pytest.param("http://169.254.169.254/latest/meta-data", "169.254.169.254", id="metadata"),
    pytest.param("http://[fe80::1]/", "fe80::1", id="link-local-v6"),
    pytest.param("http://0.0.0.0/", "0.0.0.0", id="unspecified-v4"),
    pytest.param("http://[::]/", "::", id="unspecified-v6"),
    pytest.param("ftp://example.com/", "not an http(s) URL", id="ftp"),
    pytest.param("file:///etc/passwd", "not an http(s) URL", id="file"),
    pytest.param("example.com/hook", "not an http(s) URL", id="no-scheme"),
    pytest.param("http:///hook", "has no host", id="no-host"),
    pytest.param("http://:8080/hook", "has no host", id="no-host-with-port"),
]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://user:pw-secret@127.0.0.1/", id="loopback"),
        pytest.param("https://svc:pw-secret@hooks.example.com/in", id="public"),
        pytest.param("https://:pw-secret@hooks.example.com/in", id="password-only"),
    ],
)
def test_credentials_in_the_url_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(EgressDenied) as caught:
        EgressPolicy().check_url(url)
    assert "carries credentials" in str(caught.value)
    assert "pw-secret" not in str(caught.value)


ALLOWED_BY_DEFAULT = [
    "https://example.com/hook",
    "http://example.com:8080/hook?x=1",
    "http://8.8.8.8/",
    "http://[2001:db8::1]/",
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_BY_DEFAULT)
def test_refused_by_default(url: str, reason: str) -> None:
    with pytest.raises(EgressDenied) as caught:
        EgressPolicy().check_url(url)
    assert reason in str(caught.value)
    assert url in str(caught.value)


@pytest.mark.parametrize("url", ALLOWED_BY_DEFAULT)
def test_allowed_by_default(url: str) -> None:
    EgressPolicy().check_url(url)
    EgressPolicy.from_lists([], []).check_url(url)


@pytest.mark.parametrize(("url", "reason"), REFUSED_BY_DEFAULT)
def test_from_empty_lists_matches_the_defaults(url: str, reason: str) -> None:
    with pytest.raises(EgressDenied):
        EgressPolicy.from_lists([], []).check_url(url)


def test_denial_says_how_to_allow_it() -> None:
    with pytest.raises(EgressDenied) as caught:
        EgressPolicy().check_url("http://127.0.0.1:9000/")
    assert "egress.allowedNetworks" in str(caught.value)


def test_allowed_networks_open_exactly_what_they_list() -> None:
    policy = EgressPolicy.from_lists(["127.0.0.1/32"], [])
    policy.check_url("http://127.0.0.1:8080/hook")
    policy.check_url("http://localhost:8080/hook")  # localhost is taken as 127.0.0.1
    for url in ("http://127.0.0.2/", "http://[::1]/", "http://169.254.169.254/"):
        with pytest.raises(EgressDenied):
            policy.check_url(url)
    # Not an http(s) URL stays refused whatever the networks say.
    with pytest.raises(EgressDenied):
        policy.check_url("ftp://127.0.0.1/")


def test_allowed_network_beats_a_denied_one() -> None:
    policy = EgressPolicy.from_lists(["169.254.10.0/24"], ["10.0.0.0/8"])
    policy.check_url("http://169.254.10.7/")
    with pytest.raises(EgressDenied):
        policy.check_url("http://169.254.169.254/")
    policy.from_lists(["10.1.0.0/16"], ["10.0.0.0/8"]).check_url("http://10.1.2.3/")


def test_extra_denied_networks_add_to_the_defaults() -> None:
    policy = EgressPolicy.from_lists([], ["8.8.8.0/24", "2001:db8::/32"])
    for url in ("http://8.8.8.8/", "http://[2001:db8::1]/", "http://127.0.0.1/"):
        with pytest.raises(EgressDenied):
            policy.check_url(url)
    policy.check_url("http://8.8.4.4/")
    policy.check_url("https://example.com/")


def test_networks_are_taken_non_strictly() -> None:
    """A CIDR with host bits set (10.1.2.3/8) means its network, as people write it."""
    policy = EgressPolicy.from_lists(["127.0.0.5/8"], [])
    policy.check_url("http://127.0.0.2/")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://[::ffff:127.0.0.1]/", id="v4-mapped-loopback"),
        pytest.param("http://[::ffff:169.254.169.254]/latest/meta-data", id="v4-mapped-metadata"),
        pytest.param("http://[::ffff:0.0.0.0]/", id="v4-mapped-unspecified"),
    ],
)
def test_ipv4_mapped_ipv6_literals_are_refused(url: str) -> None:
    """`::ffff:127.0.0.1` is a literal address that connects to 127.0.0.1 (dual-stack sockets);
    it must be judged as the IPv4 address it maps to, not slip past the IPv4 networks."""
    with pytest.raises(EgressDenied):
        EgressPolicy().check_url(url)


def test_malformed_url_is_an_egress_refusal() -> None:
    """`urlsplit` raises a bare ValueError on an unclosed IPv6 bracket; the check must turn it
    into EgressDenied so callers report it against the URL field."""
    with pytest.raises(EgressDenied):
        EgressPolicy().check_url("http://[::1/hook")


# -- through the admin API and the configuration file ----------------------------------------


async def test_api_refuses_loopback_without_allowlist(tmp_path: Path) -> None:
    async with run_gateway(make_settings(tmp_path / "data")) as gw:
        body = subscription("s1", "http://127.0.0.1:9000/hook")
        response = await gw.client.put("/v1/subscriptions/s1", json=body)
        problem = assert_problem(response, 400, "invalid-request")
        assert problem["field"] == "destination.http.url"
        assert "127.0.0.1" in problem["detail"]
        response = await gw.client.put(
            "/v1/subscriptions/s1", json=subscription("s1", "http://169.254.169.254/")
        )
        assert assert_problem(response, 400, "invalid-request")["field"] == "destination.http.url"
        assert (await gw.client.get("/v1/subscriptions")).json() == {"subscriptions": []}
        # A public destination is fine.
        response = await gw.client.put(
            "/v1/subscriptions/s1", json=subscription("s1", "https://example.com/hook")
        )
        assert response.status_code == 201


async def test_api_allows_loopback_with_allowlist_only_for_listed_address(tmp_path: Path) -> None:
    async with run_gateway(make_settings(tmp_path / "data", egress=LOOPBACK_EGRESS)) as gw:
        ok = await gw.client.put(
            "/v1/subscriptions/s1", json=subscription("s1", "http://127.0.0.1:9000/hook")
        )
        assert ok.status_code == 201
        refused = await gw.client.put(
            "/v1/subscriptions/s2", json=subscription("s2", "http://127.0.0.2:9000/hook")
        )
        assert assert_problem(refused, 400, "invalid-request")["field"] == "destination.http.url"


async def test_api_malformed_url_is_400_not_500(tmp_path: Path) -> None:
    async with run_gateway(make_settings(tmp_path / "data")) as gw:
        response = await gw.client.put(
            "/v1/subscriptions/s1", json=subscription("s1", "http://[::1/hook")
        )
        assert assert_problem(response, 400, "invalid-request")["field"] == "destination.http.url"


def config_with(url: str, **egress: list[str]) -> dict[str, object]:
    return {
        "egress": egress,
        "topics": [{"name": "orders"}],
        "subscriptions": [
            subscription("ok", "https://example.com/hook"),
            subscription("s1", url),
        ],
    }


def test_config_refuses_loopback_naming_the_key_path() -> None:
    settings = parse_config(config_with("http://127.0.0.1:9000/hook"))
    with pytest.raises(ConfigError) as caught:
        validate_settings(settings)
    assert str(caught.value).startswith("subscriptions[1].destination.http.url:")
    only = parse_config({"subscriptions": [subscription("s", "http://[::1]/", topic="default")]})
    with pytest.raises(ConfigError, match=r"^subscriptions\[0\]\.destination\.http\.url: "):
        validate_settings(only)


def test_config_allowlist_admits_loopback() -> None:
    settings = parse_config(config_with("http://127.0.0.1:9000/", allowedNetworks=["127.0.0.1/32"]))
    assert [s.name for s in validate_settings(settings)] == ["ok", "s1"]


def test_config_extra_denied_network_refuses_a_public_destination() -> None:
    settings = parse_config(config_with("http://8.8.8.8/", deniedNetworks=["8.8.8.0/24"]))
    with pytest.raises(ConfigError, match=r"^subscriptions\[1\]\.destination\.http\.url: "):
        validate_settings(settings)
    validate_settings(parse_config(config_with("http://8.8.8.8/")))


def test_private_ranges_need_an_explicit_allowance() -> None:
    """In-cluster services are private: the operator lists their CIDRs (documented)."""
    with pytest.raises(ConfigError):
        validate_settings(parse_config(config_with("http://10.1.2.3/")))
    validate_settings(parse_config(config_with("http://10.1.2.3/", allowedNetworks=["10.0.0.0/8"])))


@pytest.mark.parametrize(
    "egress",
    [
        pytest.param({"allowedNetworks": ["127.0.0.1/33"]}, id="prefix-too-long"),
        pytest.param({"allowedNetworks": ["not-a-network"]}, id="not-a-network"),
        pytest.param({"deniedNetworks": ["10.0.0.0/8", "300.0.0.0/8"]}, id="bad-octet"),
    ],
)
def test_config_bad_cidr_names_egress(egress: dict[str, list[str]]) -> None:
    settings = parse_config(config_with("https://example.com/", **egress))
    with pytest.raises(ConfigError) as caught:
        validate_settings(settings)
    assert str(caught.value).startswith("egress")
    assert "CIDR" in str(caught.value)


def test_config_egress_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"egress"):
        parse_config({"egress": {"allowNetworks": ["127.0.0.1/32"]}})


# -- spellings of a denied host (issue 19, F7) and hosts that are no host at all (F8) ----------

LOOPBACK_SPELLINGS = [
    pytest.param("http://[::7f00:1]/", id="v4-compatible"),
    pytest.param("http://[::127.0.0.1]/", id="v4-compatible-dotted"),
    pytest.param("http://[::ffff:0:7f00:1]/", id="v4-translated"),
    pytest.param("http://[64:ff9b::7f00:1]/", id="nat64"),
    pytest.param("http://127.0.0.1\uff0e/", id="fullwidth-trailing-dot"),
    pytest.param("http://127\u30020\u30020\u30021/", id="ideographic-dots"),
    pytest.param("http://\uff11\uff12\uff17.0.0.1/", id="fullwidth-digits"),
    pytest.param("http://localhost\u3002/", id="localhost-ideographic-dot"),
    pytest.param("http://foo.localhost/", id="sub-localhost"),
    pytest.param("http://a.b.LOCALHOST./", id="sub-localhost-upper-dot"),
]


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_spellings_of_loopback_are_refused_by_default(url: str) -> None:
    with pytest.raises(EgressDenied, match="egress policy denies"):
        EgressPolicy().check_url(url)


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_spellings_of_loopback_are_allowed_when_loopback_is(url: str) -> None:
    """Judged as the address a client connects to: allowing 127.0.0.1 allows them all."""
    EgressPolicy.from_lists(["127.0.0.1/32"], []).check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("http://%31%32%37.0.0.1/", "percent-encoded host ('127.0.0.1'", id="percent"),
        pytest.param("http://exa%6Dple.com/", "percent-encoded", id="percent-name"),
        pytest.param("http://a\x00b/", "not a DNS label", id="nul"),
        pytest.param("http://127.0.0.1\x00.example.com/", "not a DNS label", id="nul-after-ip"),
        pytest.param("http://" + "a" * 64 + ".com/", "not a DNS label", id="label-64"),
        pytest.param("http://a..com/", "not a DNS label", id="empty-label"),
        pytest.param("http://" + ("a" * 50 + ".") * 5 + "com/", "over 253", id="name-254"),
        pytest.param("http://ex ample.com/", "not a DNS label", id="space"),
        pytest.param("http://\u00e9" * 1 + "x" * 70 + ".com/", "valid host name", id="idna-label"),
    ],
)
def test_hosts_that_are_no_dns_name_are_refused(url: str, reason: str) -> None:
    with pytest.raises(EgressDenied) as caught:
        EgressPolicy.from_lists(["0.0.0.0/0", "::/0"], []).check_url(url)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://" + "a" * 63 + ".com/",
        "http://" + ("a" * 62 + ".") * 3 + "a" * 63 + "/",  # 252 characters
        "http://_dmarc.example.com/",
        "https://b\u00fccher.example/",  # IDNA: xn--bcher-kva.example
        "http://Example.COM./",
    ],
)
def test_names_within_dns_limits_are_allowed(url: str) -> None:
    EgressPolicy().check_url(url)


def test_every_loopback_form_is_denied_where_a_push_connects_too() -> None:
    """The connect-time check (PolicyResolver) uses the same judgement of addresses."""
    policy = EgressPolicy()
    for address in ("::7f00:1", "::ffff:0:7f00:1", "64:ff9b::a9fe:a9fe"):
        assert not policy.allows(ipaddress.ip_address(address)), address
    assert policy.allows(ipaddress.ip_address("2001:db8::7f00:1"))  # no IPv4 inside
    assert not policy.allows_name("foo.localhost")
    assert policy.allows_name("localhost.example.com")


@pytest.mark.parametrize(
    "url",
    [
        *LOOPBACK_SPELLINGS,
        pytest.param("http://%31%32%37.0.0.1/", id="percent"),
        pytest.param("http://a\x00b/", id="nul"),
        pytest.param("http://" + "a" * 64 + ".com/", id="label-64"),
        pytest.param("http://" + ("a" * 50 + ".") * 5 + "com/", id="name-254"),
    ],
)
async def test_api_refuses_them_at_save_time_naming_the_url(tmp_path: Path, url: str) -> None:
    async with run_gateway(make_settings(tmp_path / "data")) as gw:
        response = await gw.client.put("/v1/subscriptions/s1", json=subscription("s1", url))
        problem = assert_problem(response, 400, "invalid-request")
        assert problem["field"] == "destination.http.url"
        assert (await gw.client.get("/v1/subscriptions")).json() == {"subscriptions": []}


def test_config_refuses_them_naming_the_key_path() -> None:
    for url in ("http://[::ffff:0:7f00:1]/", "http://foo.localhost/", "http://a\x00b/"):
        with pytest.raises(ConfigError, match=r"^subscriptions\[1\]\.destination\.http\.url: "):
            validate_settings(parse_config(config_with(url)))
