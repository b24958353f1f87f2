"""The record grammars behind probe --mx, one RFC each: SPF terms (RFC 7208), DMARC tags
(RFC 7489), TLS-RPT (RFC 8460), MTA-STS records, policies and MX patterns (RFC 8461)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailctl.core.probe.dmarc import parse_dmarc, tree_walk_names
from mailctl.core.probe.mta_sts import mx_matches, parse_policy, parse_sts_txt
from mailctl.core.probe.spf import lookup_terms, parse_spf
from mailctl.core.probe.tls_rpt import parse_tls_rpt


@pytest.mark.parametrize(
    ("record", "lookups", "all_qualifier"),
    [
        ("v=spf1 include:_spf.google.com ~all", 1, "~"),
        ("v=spf1 -all", 0, "-"),
        ("V=SPF1 MX A ALL", 2, "+"),
        ("v=spf1 a/24 mx:mail.example.org/24//64 a//96 ip4:192.0.2.0/24 -all", 3, "-"),
        ("v=spf1 ip6:2001:db8::/32 ip4:192.0.2.1 ?all", 0, "?"),
        ("v=spf1 exists:%{i}._spf.%{d} ptr ptr:example.org -all", 3, "-"),
        ("v=spf1 redirect=_spf.example.org", 1, None),
        ("v=spf1 mx exp=explain.%{d} unknown-mod=anything -all", 1, "-"),
        ("v=spf1  mx   -all", 1, "-"),  # several spaces between terms
        ("v=spf1", 0, None),
    ],
)
def test_spf_records_that_parse(record: str, lookups: int, all_qualifier: str | None) -> None:
    assert parse_spf(record) == (None, lookups, all_qualifier)


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("v=spf1 a/33 -all", "IPv4 prefix"),
        ("v=spf1 mx//129 -all", "IPv6 prefix"),
        ("v=spf1 ip4:192.0.2.0/33", "not an IPv4"),
        ("v=spf1 ip4:2001:db8::1", "not an IPv4"),
        ("v=spf1 ip6:192.0.2.1", "not an IPv6"),
        ("v=spf1 ip4", "needs an address"),
        ("v=spf1 exists:", "needs a domain"),
        ("v=spf1 include:nodots", "needs a domain"),
        ("v=spf1 all:x", "takes no value"),
        ("v=spf1 mx:bad..name", "bad domain"),
        ("v=spf1 foo=%x", "bad macro"),
        ("v=spf1 exp=a.test exp=b.test", "twice"),
        ("v=spf1 redirect=", "needs a domain"),
        ("v=spf1 +", "unknown mechanism"),
    ],
)
def test_spf_records_that_do_not_parse(record: str, why: str) -> None:
    problem, _, _ = parse_spf(record)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    ("record", "terms", "has_all"),
    [
        ("v=spf1 include:_spf.example.org ~all", [("include", "_spf.example.org")], True),
        (
            "v=spf1 a/24 mx:mail.example.org/24//64 ip4:192.0.2.1",
            [("a", None), ("mx", "mail.example.org")],
            False,
        ),
        (
            "v=spf1 -exists:%{i}.x.example.org ptr redirect=r.example.org",
            [("exists", "%{i}.x.example.org"), ("ptr", None), ("redirect", "r.example.org")],
            False,
        ),
        ("v=spf1 A:Host.Example.org exp=x.example.org -ALL", [("a", "Host.Example.org")], True),
    ],
)
def test_spf_lookup_terms(record: str, terms: list[tuple[str, str | None]], has_all: bool) -> None:
    """The terms `follow_spf` looks up, with the domain each names (None: the current one)."""
    assert lookup_terms(record) == (terms, has_all)


@pytest.mark.parametrize(
    "record",
    [
        "v=DMARC1; p=none",
        "v=DMARC1;p=reject;sp=quarantine;adkim=s;aspf=r;pct=50;fo=0:1:d:s;ri=86400",
        "v=DMARC1; p=quarantine; rua=mailto:a@x.test,mailto:b@y.test!10m; ruf=mailto:f@x.test;",
        "v=DMARC1; p=reject; future=whatever",  # RFC 7489 6.3: unknown tags are ignored
    ],
)
def test_dmarc_records_that_parse(record: str) -> None:
    assert parse_dmarc(record)[1] is None


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("v=DMARC1", "no p= tag"),
        ("v=DMARC1; p=reject; adkim=x", "adkim"),
        ("v=DMARC1; p=reject; fo=2", "fo"),
        ("v=DMARC1; p=reject; rua=not a uri", "rua"),
        ("v=DMARC1; p=reject; ri=soon", "ri"),
        ("v=DMARC1; p reject", "not tag=value"),
        ("v=DMARC2; p=reject", "start with v=DMARC1"),
    ],
)
def test_dmarc_records_that_do_not_parse(record: str, why: str) -> None:
    problem = parse_dmarc(record)[1]
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    ("domain", "names"),
    [
        ("example.org", []),
        ("org", []),
        ("a.example.org", ["example.org"]),
        ("x.a.example.org.", ["a.example.org", "example.org"]),
        (
            "1.2.3.4.5.6.7.8.example.org",  # 10 labels: to the last 7, then one at a time
            [
                "4.5.6.7.8.example.org",
                "5.6.7.8.example.org",
                "6.7.8.example.org",
                "7.8.example.org",
                "8.example.org",
                "example.org",
            ],
        ),
        (
            "3.4.5.6.7.8.example.org",
            [
                "4.5.6.7.8.example.org",
                "5.6.7.8.example.org",
                "6.7.8.example.org",
                "7.8.example.org",
                "8.example.org",
                "example.org",
            ],
        ),
    ],
)
def test_dmarc_tree_walk_names(domain: str, names: list[str]) -> None:
    """DMARCbis DNS tree walk: 8 labels or more jump to the last 7, never the top-level
    domain, at most 8 queries with the domain's own."""
    assert tree_walk_names(domain) == names


def test_tls_rpt_records() -> None:
    assert parse_tls_rpt("v=TLSRPTv1; rua=mailto:a@x.test,https://r.x.test/v1") == (
        ("mailto:a@x.test", "https://r.x.test/v1"),
        None,
    )
    assert parse_tls_rpt("v=TLSRPTv1; rua=http://r.x.test/")[1] is not None  # https only
    assert parse_tls_rpt("v=TLSRPTv1; rua=mailto:nobody")[1] is not None
    assert parse_tls_rpt("v=TLSRPTv1; ext=1")[1] == "the record has no rua= field"


@pytest.mark.parametrize(
    ("record", "result"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1; id=abc; ext=1", "abc"),
        ("v=STSv1; id=" + "a" * 33, None),
        ("id=abc; v=STSv1", None),
        ("v=STSv1; id", None),
    ],
)
def test_mta_sts_txt(record: str, result: str | None) -> None:
    assert parse_sts_txt(record)[0] == result


def test_mta_sts_policy_ignores_unknown_keys_and_takes_lf() -> None:
    policy, problem = parse_policy(
        b"version: STSv1\nmode: testing\nmx: mx.x.test\nmax_age: 86400\nextension_1: x\n", "1"
    )
    assert problem is None and policy is not None
    assert (policy.mode, policy.max_age, policy.mx) == ("testing", 86400, ("mx.x.test",))
    assert (
        parse_policy(b"version: STSv1\nmode: enforce\nmx: *.*.x.test\nmax_age: 1\n", "1")[0] is None
    )


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mx1.example.org", "MX1.Example.ORG.", True),
        ("mx1.example.org.", "mx1.example.org", True),
        ("*.example.org", "mx1.example.org", True),
        ("*.example.org", "example.org", False),
        ("*.example.org", "a.b.example.org", False),
        ("*.example.org", "mx1.example.org.evil.test", False),
        ("*.example.org", "mx1example.org", False),
        ("mx1.example.org", "mx2.example.org", False),
    ],
)
def test_mx_patterns(pattern: str, host: str, matches: bool) -> None:
    """RFC 8461 4.1: a wildcard stands for exactly one leftmost label."""
    assert mx_matches(pattern, host) is matches


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(label=_LABEL, extra=_LABEL, domain=st.lists(_LABEL, min_size=2, max_size=4).map(".".join))
def test_wildcard_is_one_label(label: str, extra: str, domain: str) -> None:
    assert mx_matches(f"*.{domain}", f"{label}.{domain}")
    assert not mx_matches(f"*.{domain}", domain)
    assert not mx_matches(f"*.{domain}", f"{extra}.{label}.{domain}")
