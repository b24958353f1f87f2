"""probe --mx's DNS mail policy against a local authoritative DNS server and a local HTTPS
server for MTA-STS policies: every finding code, and `nameserver`/`ca_file` applied to the
policy fetch too (tests/servers/dns.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_zone import GOOD_POLICY, codes, good_zone, options
from servers.dns import DnsServer, PolicyReply, PolicyServer

from mailctl.core.probe.dns_policy import DnsOptions, DomainPolicy, domain_policy, resolve_mx
from mailctl.core.probe.findings import Severity
from mailctl.errors import ConfigError, HeaderInjectionError, InputDataError, UsageError
from mailctl.serialize import to_data


@pytest.fixture
def ca_file(policy_server: PolicyServer, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    policy_server.ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[DnsServer]:
    dns_server.set_records(good_zone())
    yield dns_server


def serve(policy_server: PolicyServer, body: bytes = GOOD_POLICY, **kwargs: object) -> None:
    policy_server.policies["mta-sts.good.test"] = PolicyReply(body, **kwargs)  # type: ignore[arg-type]


def check(zone: DnsServer, ca_file: Path | None, mx: list[str] | None = None) -> DomainPolicy:
    return domain_policy(
        "good.test", mx or ["mx1.good.test", "a.mail.good.test"], options(zone, ca_file)
    )


# --- MX ------------------------------------------------------------------------------------


def test_mx_hosts_in_preference_order_with_addresses_from_the_nameserver(zone: DnsServer) -> None:
    zone.set_records({"good.test": ["MX 5 mx0.good.test."], "mx0.good.test": ["AAAA ::1"]})
    hosts = resolve_mx("good.test", options(zone))
    assert [(h.preference, h.name, h.addresses) for h in hosts] == [
        (5, "mx0.good.test", ("::1",)),
        (10, "mx1.good.test", ("127.0.0.1",)),
        (20, "a.mail.good.test", ("127.0.0.1",)),
    ]
    assert all(not h.findings and not h.ad for h in hosts)
    assert ("mx0.good.test", "AAAA") in zone.queries()


def test_ad_bit_reported_as_the_resolver_gave_it(zone: DnsServer) -> None:
    zone.ad = True
    assert all(h.ad for h in resolve_mx("good.test", options(zone)))
    zone.ad = False
    assert not any(h.ad for h in resolve_mx("good.test", options(zone)))


def test_null_mx_is_reported_and_has_no_host(dns_server: DnsServer) -> None:
    dns_server.set_records({"null.test": ["MX 0 ."]})
    [host] = resolve_mx("null.test", options(dns_server))
    assert host.null and host.name == "." and host.addresses == ()
    assert [(f.code, f.severity) for f in host.findings] == [("mx.null", Severity.WARNING)]


def test_null_mx_beside_real_mx_is_an_error(dns_server: DnsServer) -> None:
    dns_server.set_records(
        {"mixed.test": ["MX 0 .", "MX 10 mx.mixed.test."], "mx.mixed.test": ["A 127.0.0.1"]}
    )
    hosts = resolve_mx("mixed.test", options(dns_server))
    assert [h.name for h in hosts] == [".", "mx.mixed.test"]
    assert [(f.code, f.severity) for f in hosts[0].findings] == [("mx.null", Severity.ERROR)]


def test_no_mx_falls_back_to_the_domain_address(dns_server: DnsServer) -> None:
    dns_server.set_records({"plain.test": ["A 127.0.0.3"]})
    [host] = resolve_mx("plain.test", options(dns_server))
    assert host.implicit and host.name == "plain.test" and host.addresses == ("127.0.0.3",)
    assert [(f.code, f.severity) for f in host.findings] == [("mx.none", Severity.WARNING)]


@pytest.mark.parametrize("records", [{}, {"empty.test": ['TXT "hello"']}])
def test_no_mx_and_no_address_is_an_error(
    dns_server: DnsServer, records: dict[str, list[str]]
) -> None:
    dns_server.set_records(records)
    [host] = resolve_mx("empty.test", options(dns_server))
    assert host.implicit and host.addresses == ()
    assert [(f.code, f.severity) for f in host.findings] == [("mx.none", Severity.ERROR)]


def test_mx_host_without_address_is_named(dns_server: DnsServer) -> None:
    dns_server.set_records(
        {"d.test": ["MX 10 ghost.d.test.", "MX 20 mx.d.test."], "mx.d.test": ["A 127.0.0.1"]}
    )
    ghost, real = resolve_mx("d.test", options(dns_server))
    assert [f.code for f in ghost.findings] == ["mx.unresolvable"] and ghost.addresses == ()
    assert "ghost.d.test" in ghost.findings[0].message
    assert real.findings == ()


def test_nameserver_must_be_an_address() -> None:
    with pytest.raises(UsageError, match="not an IP address"):
        resolve_mx("good.test", DnsOptions(nameserver="ns.example.test"))


# --- the whole policy ----------------------------------------------------------------------


def test_a_domain_with_everything_right_has_no_findings(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    serve(policy_server)
    policy = check(zone, ca_file)
    assert policy.findings == ()
    assert policy.mta_sts_policy is not None
    assert policy.mta_sts_policy.mode == "enforce"
    assert policy.mta_sts_policy.mx == ("mx1.good.test", "*.mail.good.test")
    assert policy.mta_sts.records == ("v=STSv1; id=20240101",)
    assert policy.spf.records == ("v=spf1 mx -all",)
    assert policy.dmarc.status == "ok" and policy.tls_rpt.status == "ok"
    # The policy host was looked up through our nameserver and fetched with SNI and Host.
    assert ("mta-sts.good.test", "A") in zone.queries()
    assert policy_server.sni == ["mta-sts.good.test"]
    assert policy_server.requests == [
        ("mta-sts.good.test", "GET /.well-known/mta-sts.txt HTTP/1.1")
    ]
    # The results go into the probe's JSON as they are (no bytes, every key present).
    data = to_data(policy)
    assert data["mta_sts_policy"]["mx"] == ["mx1.good.test", "*.mail.good.test"]
    spf = {"name": "good.test", "status": "ok", "records": ["v=spf1 mx -all"], "ad": False}
    assert data["spf"] == spf
    assert to_data(resolve_mx("good.test", options(zone)))[0]["addresses"] == ["127.0.0.1"]


def test_policy_served_chunked_is_read(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    serve(policy_server, chunked=True)
    assert check(zone, ca_file).findings == ()


def test_mta_sts_missing(zone: DnsServer, ca_file: Path) -> None:
    zone.rrsets.pop(("_mta-sts.good.test", 16))
    assert codes(check(zone, ca_file)) == {"mta_sts.missing": Severity.WARNING}


@pytest.mark.parametrize(
    "records",
    [
        ['TXT "v=STSv1; id=a-b"'],  # id is letters and digits only
        ['TXT "v=STSv1;"'],  # no id
        ['TXT "v=STSv1; id=1"', 'TXT "v=STSv1; id=2"'],  # two records: none applies
    ],
)
def test_mta_sts_record_invalid(zone: DnsServer, ca_file: Path, records: list[str]) -> None:
    zone.rrsets.pop(("_mta-sts.good.test", 16))
    zone.set_records({"_mta-sts.good.test": records})
    assert codes(check(zone, ca_file)) == {"mta_sts.record_invalid": Severity.ERROR}


def test_unrelated_txt_records_are_not_mta_sts(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    zone.set_records({"_mta-sts.good.test": ['TXT "something else"']})
    serve(policy_server)
    assert check(zone, ca_file).findings == ()


@pytest.mark.parametrize(
    ("body", "kwargs", "why"),
    [
        (GOOD_POLICY.replace(b"enforce", b"strict"), {}, "mode must be"),
        (GOOD_POLICY.replace(b"version: STSv1\r\n", b""), {}, "version"),
        (GOOD_POLICY.replace(b"604800", b"99999999999"), {}, "max_age"),
        (b"version: STSv1\r\nmode: enforce\r\nmax_age: 604800\r\n", {}, "mx"),
        (GOOD_POLICY + b"no colon here\r\n", {}, "line 6"),
        (GOOD_POLICY, {"content_type": "text/html\x1b[31m"}, "'text/html\\x1b[31m'"),
        (b"\xff\xfe", {}, "UTF-8"),
        (GOOD_POLICY + b"#" * 70_000, {}, "65536"),
    ],
)
def test_mta_sts_policy_invalid(
    zone: DnsServer,
    policy_server: PolicyServer,
    ca_file: Path,
    body: bytes,
    kwargs: dict[str, object],
    why: str,
) -> None:
    serve(policy_server, body, **kwargs)
    policy = check(zone, ca_file)
    assert codes(policy) == {"mta_sts.policy_invalid": Severity.ERROR}
    assert why in policy.findings[0].message
    assert policy.mta_sts_policy is None


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (PolicyReply(b"gone", status=404), "HTTP 404"),
        (
            PolicyReply(b"", status=301, headers={"Location": "https://elsewhere.test/"}),
            "redirects",
        ),
        (PolicyReply(raw=b"SSH-2.0-OpenSSH\r\n\r\n"), "HTTP/1.x"),
    ],
)
def test_mta_sts_policy_unreachable(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path, reply: PolicyReply, why: str
) -> None:
    policy_server.policies["mta-sts.good.test"] = reply
    policy = check(zone, ca_file)
    assert codes(policy) == {"mta_sts.policy_unreachable": Severity.ERROR}
    assert why in policy.findings[0].message
    assert len(policy_server.requests) == 1  # the redirect was not followed


def test_policy_host_without_address(zone: DnsServer, ca_file: Path) -> None:
    zone.rrsets.pop(("mta-sts.good.test", 1))
    policy = check(zone, ca_file)
    assert codes(policy) == {"mta_sts.policy_unreachable": Severity.ERROR}
    assert "mta-sts.good.test" in policy.findings[0].message


def test_policy_certificate_from_an_unknown_ca(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    serve(policy_server)
    policy_server.untrusted.add("mta-sts.good.test")
    policy = check(zone, ca_file)
    assert codes(policy) == {"mta_sts.policy_tls": Severity.ERROR}
    assert policy_server.requests == []  # nothing was asked over an unverified connection


def test_ca_file_applies_to_the_policy_fetch(zone: DnsServer, policy_server: PolicyServer) -> None:
    """Without --ca-file the system store is used, which does not know the test CA."""
    serve(policy_server)
    assert codes(check(zone, None)) == {"mta_sts.policy_tls": Severity.ERROR}


def test_unusable_ca_file_is_an_error_not_a_finding(zone: DnsServer, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no usable PEM"):
        check(zone, bad)


@pytest.mark.parametrize(
    ("mode", "severity"), [(b"enforce", Severity.ERROR), (b"testing", Severity.WARNING)]
)
def test_mx_mismatch(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path, mode: bytes, severity: Severity
) -> None:
    serve(policy_server, GOOD_POLICY.replace(b"enforce", mode))
    # a.b.mail.good.test: the wildcard stands for one label only (RFC 8461 4.1).
    policy = check(zone, ca_file, ["mx1.good.test", "a.b.mail.good.test", "mail.good.test"])
    found = [f for f in policy.findings if f.code == "mta_sts.mx_mismatch"]
    assert [f.severity for f in found] == [severity]
    assert "a.b.mail.good.test, mail.good.test" in found[0].message


def test_policy_modes_and_short_max_age(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    serve(policy_server, GOOD_POLICY.replace(b"enforce", b"testing"))
    assert codes(check(zone, ca_file)) == {"mta_sts.mode_testing": Severity.INFO}
    serve(policy_server, b"version: STSv1\nmode: none\nmax_age: 86400\n")
    assert codes(check(zone, ca_file, ["elsewhere.test"])) == {"mta_sts.mode_none": Severity.INFO}
    serve(policy_server, GOOD_POLICY.replace(b"604800", b"300"))
    assert codes(check(zone, ca_file)) == {"mta_sts.max_age_short": Severity.WARNING}


# --- TLS-RPT, SPF, DMARC ---------------------------------------------------------------------


def replace_txt(zone: DnsServer, name: str, records: list[str]) -> None:
    zone.rrsets.pop((name, 16), None)
    if records:
        zone.set_records({name: records})


@pytest.mark.parametrize(
    ("records", "code", "severity"),
    [
        ([], "tls_rpt.missing", Severity.INFO),
        (['TXT "v=TLSRPTv1; rua=ftp://x.test"'], "tls_rpt.invalid", Severity.WARNING),
        (['TXT "v=TLSRPTv1;"'], "tls_rpt.invalid", Severity.WARNING),
        (
            ['TXT "v=TLSRPTv1; rua=mailto:a@x.test"', 'TXT "v=TLSRPTv1; rua=mailto:b@x.test"'],
            "tls_rpt.invalid",
            Severity.WARNING,
        ),
    ],
)
def test_tls_rpt(
    zone: DnsServer,
    policy_server: PolicyServer,
    ca_file: Path,
    records: list[str],
    code: str,
    severity: Severity,
) -> None:
    serve(policy_server)
    replace_txt(zone, "_smtp._tls.good.test", records)
    assert codes(check(zone, ca_file)) == {code: severity}


@pytest.mark.parametrize(
    ("records", "code", "severity"),
    [
        (['TXT "google-site-verification=abc"'], "spf.missing", Severity.WARNING),
        (['TXT "v=spf1 mx -all"', 'TXT "v=spf1 a -all"'], "spf.multiple", Severity.ERROR),
        (['TXT "v=spf1 ip4:300.1.2.3 -all"'], "spf.invalid", Severity.ERROR),
        (['TXT "v=spf1 include: -all"'], "spf.invalid", Severity.ERROR),
        (['TXT "v=spf1 frobnicate -all"'], "spf.invalid", Severity.ERROR),
        (['TXT "v=spf1 redirect=a.test redirect=b.test"'], "spf.invalid", Severity.ERROR),
        (['TXT "v=spf1 " "+all"'], "spf.pass_all", Severity.WARNING),  # strings are joined
        (
            [f'TXT "v=spf1 {" ".join(f"include:s{i}.test" for i in range(11))} -all"'],
            "spf.too_many_lookups",
            Severity.ERROR,
        ),
    ],
)
def test_spf(
    zone: DnsServer,
    policy_server: PolicyServer,
    ca_file: Path,
    records: list[str],
    code: str,
    severity: Severity,
) -> None:
    serve(policy_server)
    replace_txt(zone, "good.test", records)
    assert codes(check(zone, ca_file)) == {code: severity}


# --- SPF across include: and redirect= (RFC 7208 4.6.4, 5.2, 6.1) ------------------------------


def spf_tree(zone: DnsServer, top: str, records: dict[str, str]) -> DomainPolicy:
    """good.test's SPF record is `top`; `records` are the SPF records of other names."""
    replace_txt(zone, "good.test", [f'TXT "{top}"'])
    zone.set_records({name: [f'TXT "{text}"'] for name, text in records.items()})
    return domain_policy("good.test", [], options(zone))


def spf_codes(policy: DomainPolicy) -> dict[str, Severity]:
    return {f.code: f.severity for f in policy.findings if f.code.startswith("spf.")}


def spf_finding(policy: DomainPolicy, code: str) -> str:
    [message] = [f.message for f in policy.findings if f.code == code]
    return message


def test_spf_includes_are_followed_and_a_sound_tree_has_no_findings(zone: DnsServer) -> None:
    zone.set_records({"a.spf.test": ["A 192.0.2.1"], "mx.spf.test": ["MX 10 a.spf.test."]})
    policy = spf_tree(
        zone,
        "v=spf1 mx include:a.spf.test redirect=r.spf.test",
        {
            "a.spf.test": "v=spf1 a mx:mx.spf.test ~all",
            "r.spf.test": "v=spf1 ip4:192.0.2.0/24 -all",
        },
    )
    assert spf_codes(policy) == {}
    asked = zone.queries()
    for question in [
        ("a.spf.test", "TXT"),
        ("r.spf.test", "TXT"),
        ("good.test", "MX"),
        ("a.spf.test", "A"),
        ("mx.spf.test", "MX"),
    ]:
        assert question in asked, question


def test_spf_lookups_are_counted_over_the_includes(zone: DnsServer) -> None:
    """3 includes + 2 + 4 + 3 terms in them: 12 lookups, over the 10 of RFC 7208 4.6.4,
    though the top record alone has 3."""
    policy = spf_tree(
        zone,
        "v=spf1 include:a.spf.test include:b.spf.test include:c.spf.test -all",
        {
            "a.spf.test": "v=spf1 a mx -all",
            "b.spf.test": "v=spf1 a mx a:x.spf.test mx:x.spf.test -all",
            "c.spf.test": "v=spf1 a mx ptr -all",
        },
    )
    assert spf_codes(policy) == {"spf.too_many_lookups": Severity.ERROR}
    message = spf_finding(policy, "spf.too_many_lookups")
    assert "needs 12 DNS lookups" in message
    assert "the costliest chain, include:b.spf.test, takes 5" in message
    # Over the limit, nothing more is looked up: the a/mx terms of the includes are not asked.
    assert ("x.spf.test", "A") not in zone.queries()


def test_spf_costliest_chain_goes_through_nested_includes(zone: DnsServer) -> None:
    policy = spf_tree(
        zone,
        "v=spf1 include:a.spf.test include:b.spf.test -all",
        {
            "a.spf.test": "v=spf1 ip4:192.0.2.1 -all",
            "b.spf.test": "v=spf1 include:c.spf.test -all",
            "c.spf.test": "v=spf1 " + " ".join(f"exists:e{i}.spf.test" for i in range(9)),
        },
    )
    message = spf_finding(policy, "spf.too_many_lookups")
    assert "needs 12 DNS lookups" in message
    assert "include:b.spf.test -> include:c.spf.test, takes 11" in message


def test_spf_include_loop(zone: DnsServer) -> None:
    policy = spf_tree(
        zone,
        "v=spf1 include:l1.spf.test -all",
        {
            "l1.spf.test": "v=spf1 include:l2.spf.test -all",
            "l2.spf.test": "v=spf1 include:l1.spf.test",
        },
    )
    assert spf_codes(policy) == {"spf.include_loop": Severity.ERROR}
    message = spf_finding(policy, "spf.include_loop")
    assert "good.test -> l1.spf.test -> l2.spf.test -> l1.spf.test" in message
    assert zone.queries().count(("l1.spf.test", "TXT")) == 1


@pytest.mark.parametrize(
    ("top", "target", "code"),
    [
        (
            "v=spf1 include:none.spf.test -all",
            {"none.spf.test": "google-site-verification=x"},
            "spf.include_missing",
        ),
        ("v=spf1 include:gone.spf.test -all", {}, "spf.include_missing"),  # NXDOMAIN
        ("v=spf1 redirect=none.spf.test", {"none.spf.test": "hello"}, "spf.include_missing"),
        (
            "v=spf1 include:bad.spf.test -all",
            {"bad.spf.test": "v=spf1 frobnicate"},
            "spf.include_invalid",
        ),
    ],
)
def test_spf_include_without_one_sound_record(
    zone: DnsServer, top: str, target: dict[str, str], code: str
) -> None:
    """RFC 7208 5.2 and 6.1: an include or redirect target without an SPF record (or one that
    does not parse) is a permerror, named with the include."""
    policy = spf_tree(zone, top, target)
    assert spf_codes(policy) == {code: Severity.ERROR}
    term = next(t for t in top.split() if t.startswith(("include:", "redirect=")))
    assert term in spf_finding(policy, code)


def test_spf_include_with_two_records(zone: DnsServer) -> None:
    replace_txt(zone, "good.test", ['TXT "v=spf1 include:two.spf.test -all"'])
    zone.set_records({"two.spf.test": ['TXT "v=spf1 -all"', 'TXT "v=spf1 mx -all"']})
    policy = domain_policy("good.test", [], options(zone))
    assert spf_codes(policy) == {"spf.include_multiple": Severity.ERROR}
    assert "two.spf.test publishes 2 SPF records" in spf_finding(policy, "spf.include_multiple")


def test_spf_more_than_two_void_lookups(zone: DnsServer) -> None:
    top = "v=spf1 a:nx1.good.test mx:nx2.good.test exists:nx3.good.test -all"
    policy = spf_tree(zone, top, {})
    assert spf_codes(policy) == {"spf.too_many_void_lookups": Severity.ERROR}
    message = spf_finding(policy, "spf.too_many_void_lookups")
    assert "3 names" in message and "mx:nx2.good.test" in message
    # Two are allowed.
    policy = spf_tree(zone, "v=spf1 a:nx1.good.test mx:nx2.good.test -all", {})
    assert spf_codes(policy) == {}


def test_spf_redirect_beside_all_is_ignored(zone: DnsServer) -> None:
    policy = spf_tree(zone, "v=spf1 mx redirect=r.spf.test -all", {"r.spf.test": "v=spf1 -all"})
    assert spf_codes(policy) == {"spf.redirect_ignored": Severity.WARNING}
    assert ("r.spf.test", "TXT") not in zone.queries()  # receivers never look it up either


def test_spf_include_with_a_macro_is_not_followed(zone: DnsServer) -> None:
    policy = spf_tree(zone, "v=spf1 include:%{d}.spf.test exists:%{i}.e.spf.test -all", {})
    assert spf_codes(policy) == {"spf.macro_skipped": Severity.INFO}
    assert not [q for q in zone.queries() if "spf.test" in q[0]]


@pytest.mark.parametrize(
    ("records", "code", "severity"),
    [
        ([], "dmarc.missing", Severity.WARNING),
        (['TXT "v=DMARC1; p=reject"', 'TXT "v=DMARC1; p=none"'], "dmarc.multiple", Severity.ERROR),
        (['TXT "v=DMARC1; rua=mailto:d@good.test"'], "dmarc.invalid", Severity.ERROR),  # no p=
        (['TXT "v=DMARC1; p=drop"'], "dmarc.invalid", Severity.ERROR),
        (['TXT "v=DMARC1; p=reject; pct=150"'], "dmarc.invalid", Severity.ERROR),
        (['TXT "p=reject; v=DMARC1"'], "dmarc.missing", Severity.WARNING),  # v= must come first
        (['TXT "v=DMARC1; p=none; rua=mailto:d@good.test"'], "dmarc.policy_none", Severity.INFO),
    ],
)
def test_dmarc(
    zone: DnsServer,
    policy_server: PolicyServer,
    ca_file: Path,
    records: list[str],
    code: str,
    severity: Severity,
) -> None:
    serve(policy_server)
    replace_txt(zone, "_dmarc.good.test", records)
    assert codes(check(zone, ca_file)) == {code: severity}


# --- DMARC: the DMARCbis tree walk above a domain without a record -----------------------------


def dmarc_findings(server: DnsServer, domain: str) -> dict[str, tuple[Severity, str]]:
    policy = domain_policy(domain, [], options(server))
    return {f.code: (f.severity, f.message) for f in policy.findings if f.code.startswith("dmarc.")}


def test_dmarc_of_a_subdomain_falls_back_to_the_parent_with_its_sp(dns_server: DnsServer) -> None:
    dns_server.set_records({"_dmarc.example.test": ['TXT "v=DMARC1; p=reject; sp=quarantine"']})
    found = dmarc_findings(dns_server, "sub.example.test")
    assert found == {
        "dmarc.inherited": (
            Severity.INFO,
            "no record at _dmarc.sub.example.test; the policy of example.test applies "
            "(sp=quarantine)",
        )
    }
    assert ("_dmarc.example.test", "TXT") in dns_server.queries()
    assert ("_dmarc.test", "TXT") not in dns_server.queries()  # never the top-level domain


def test_dmarc_fallback_without_sp_applies_p_and_none_is_reported(dns_server: DnsServer) -> None:
    dns_server.set_records({"_dmarc.example.test": ['TXT "v=DMARC1; p=none"']})
    found = dmarc_findings(dns_server, "a.b.example.test")
    assert "the policy of example.test applies (p=none, no sp=)" in found["dmarc.inherited"][1]
    assert found["dmarc.policy_none"][0] is Severity.INFO


def test_dmarc_fallback_takes_the_nearest_name_with_one_record(dns_server: DnsServer) -> None:
    dns_server.set_records(
        {
            # Two records at the nearest parent: discarded (DMARCbis), the walk goes on.
            "_dmarc.c.b.example.test": ['TXT "v=DMARC1; p=none"', 'TXT "v=DMARC1; p=reject"'],
            "_dmarc.b.example.test": ['TXT "v=DMARC1; p=reject"'],
            "_dmarc.example.test": ['TXT "v=DMARC1; p=none"'],
        }
    )
    found = dmarc_findings(dns_server, "d.c.b.example.test")
    assert set(found) == {"dmarc.inherited"}
    assert "the policy of b.example.test applies (p=reject, no sp=)" in found["dmarc.inherited"][1]


def test_dmarc_fallback_record_that_does_not_parse(dns_server: DnsServer) -> None:
    dns_server.set_records({"_dmarc.example.test": ['TXT "v=DMARC1; sp=reject"']})
    found = dmarc_findings(dns_server, "sub.example.test")
    assert set(found) == {"dmarc.invalid"}
    assert "_dmarc.example.test" in found["dmarc.invalid"][1]


def test_dmarc_missing_only_when_no_name_above_has_a_record(dns_server: DnsServer) -> None:
    found = dmarc_findings(dns_server, "a.b.example.test")
    assert set(found) == {"dmarc.missing"}
    assert "_dmarc.b.example.test, _dmarc.example.test" in found["dmarc.missing"][1]
    asked = [name for name, _ in dns_server.queries() if name.startswith("_dmarc.")]
    assert sorted(asked) == [
        "_dmarc.a.b.example.test",
        "_dmarc.b.example.test",
        "_dmarc.example.test",
    ]


def test_dmarc_tree_walk_of_a_long_name_asks_at_most_eight_names(dns_server: DnsServer) -> None:
    domain = "a.b.c.d.e.f.g.h.i.example.test"  # 11 labels: the walk jumps to the last 7
    dns_server.set_records({"_dmarc.example.test": ['TXT "v=DMARC1; p=reject; sp=reject"']})
    found = dmarc_findings(dns_server, domain)
    assert "the policy of example.test applies (sp=reject)" in found["dmarc.inherited"][1]
    asked = [name for name, _ in dns_server.queries() if name.startswith("_dmarc.")]
    assert len(asked) <= 8
    assert "_dmarc.e.f.g.h.i.example.test" in asked
    assert "_dmarc.b.c.d.e.f.g.h.i.example.test" not in asked


def test_mx_record_naming_no_host_name(dns_server: DnsServer) -> None:
    dns_server.set_records(
        {"d.test": ["MX 10 bad\\032name.d.test.", "MX 20 mx.d.test."], "mx.d.test": ["A 127.0.0.1"]}
    )
    bad, real = resolve_mx("d.test", options(dns_server))
    assert [f.code for f in bad.findings] == ["mx.invalid_name"] and bad.addresses == ()
    assert ("bad name.d.test", "A") not in dns_server.queries()
    assert real.addresses == ("127.0.0.1",)


@pytest.mark.parametrize(
    ("domain", "error"),
    [
        ("good.test\r\nHost: evil.test", HeaderInjectionError),
        ("good test", InputDataError),
        ("192.0.2.1", InputDataError),
        ("", InputDataError),
    ],
)
def test_domain_must_be_a_domain_name(
    dns_server: DnsServer, domain: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        resolve_mx(domain, options(dns_server))
    with pytest.raises(error):
        domain_policy(domain, [], options(dns_server))
    assert dns_server.queries() == []


def test_unicode_domain_is_asked_as_a_labels(dns_server: DnsServer) -> None:
    dns_server.set_records({"xn--bcher-kva.test": ["MX 10 mx.xn--bcher-kva.test."]})
    dns_server.set_records({"mx.xn--bcher-kva.test": ["A 127.0.0.1"]})
    [host] = resolve_mx("Bücher.test.", options(dns_server))
    assert host.name == "mx.xn--bcher-kva.test" and host.addresses == ("127.0.0.1",)
    policy = domain_policy("bücher.test", [host.name], options(dns_server))
    assert policy.domain == "xn--bcher-kva.test"
    assert ("_mta-sts.xn--bcher-kva.test", "TXT") in dns_server.queries()
