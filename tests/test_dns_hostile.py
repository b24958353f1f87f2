"""Hostile DNS and policy servers against probe --mx's lookups: every answer bounded in size
and time (huge TXT, CNAME loops, silence, SERVFAIL, truncated UDP, a tarpit policy host)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from dns_zone import GOOD_POLICY, codes, good_zone, options
from servers.dns import DnsServer, PolicyReply, PolicyServer

from mailctl.core.probe.dane_lookup import lookup_tlsa
from mailctl.core.probe.dns_policy import domain_policy, resolve_mx
from mailctl.core.probe.findings import Severity
from mailctl.core.probe.spf_tree import follow_spf
from mailctl.errors import TemporaryError, TimeoutFailure
from mailctl.protocols.dnslookup import Answer, Resolver


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    dns_server.set_records(good_zone())
    return dns_server


@pytest.fixture
def ca_file(policy_server: PolicyServer, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    policy_server.ca.cert_pem.write_to_path(str(path))
    policy_server.policies["mta-sts.good.test"] = PolicyReply(GOOD_POLICY)
    return path


def test_large_answer_is_truncated_over_udp_and_asked_again_over_tcp(zone: DnsServer) -> None:
    """RFC 7766: a TC answer is retried over TCP; the SPF record in it is still read."""
    filler = " ".join(f"ip4:192.0.2.{i}" for i in range(1, 60))
    pieces = " ".join(f'"{filler[i : i + 200]}"' for i in range(0, len(filler), 200))
    zone.rrsets.pop(("good.test", 16))
    zone.set_records(
        {
            "good.test": [f'TXT "v=spf1 " {pieces} " -all"']
            + [f'TXT "filler-{i}-{"x" * 200}"' for i in range(10)]
        }
    )
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone))
    assert ("good.test", "TXT") in zone.queries("udp")
    assert ("good.test", "TXT") in zone.queries("tcp")
    assert policy.spf.records and policy.spf.records[0].endswith("-all")
    assert not [f for f in policy.findings if f.code.startswith(("spf.", "dns."))]


def test_huge_txt_record_is_not_checked_and_says_so(zone: DnsServer) -> None:
    """60 KB of TXT strings in one record: the answer comes over TCP, the record is cut at
    4097 bytes and reported as oversized, not parsed as SPF."""
    strings = " ".join(f'"{"a" * 250}"' for _ in range(240))
    zone.rrsets.pop(("good.test", 16))
    zone.set_records({"good.test": [f'TXT "v=spf1 " {strings}']})
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone))
    assert time.monotonic() - started < 5
    found = {f.code: f for f in policy.findings}
    assert "dns.oversized" in found and "spf.missing" not in found
    assert found["dns.oversized"].subject == "good.test"
    assert ("good.test", "TXT") in zone.queries("tcp")


def test_cname_loop_is_bounded(zone: DnsServer) -> None:
    zone.rrsets.pop(("_dmarc.good.test", 16))
    zone.set_records(
        {
            "_dmarc.good.test": ["CNAME loop1.good.test."],
            "loop1.good.test": ["CNAME _dmarc.good.test."],
        }
    )
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone))
    assert time.monotonic() - started < 5
    found = {f.code: f for f in policy.findings}
    assert found["dns.failed"].subject == "_dmarc.good.test"
    assert "CNAME" in found["dns.failed"].message
    assert "dmarc.missing" not in found  # a failed lookup is not a missing record


def test_cname_to_a_record_is_followed(zone: DnsServer) -> None:
    zone.rrsets.pop(("_dmarc.good.test", 16))
    zone.set_records(
        {
            "_dmarc.good.test": ["CNAME dmarc.provider.test."],
            "dmarc.provider.test": ['TXT "v=DMARC1; p=quarantine"'],
        }
    )
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone))
    assert policy.dmarc.records == ("v=DMARC1; p=quarantine",)
    assert not [f for f in policy.findings if f.code.startswith(("dmarc.", "dns."))]


def test_silent_server_costs_one_timeout_not_one_per_lookup(zone: DnsServer) -> None:
    zone.silent |= {"_mta-sts.good.test", "_smtp._tls.good.test", "good.test", "_dmarc.good.test"}
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, timeout=1.0))
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # the four lookups run side by side
    assert [f.code for f in policy.findings] == ["dns.timeout"] * 4
    assert all(f.severity is Severity.WARNING for f in policy.findings)
    assert policy.spf.status == "timeout"


def test_spf_include_that_never_answers_is_bounded_in_time(zone: DnsServer) -> None:
    zone.rrsets.pop(("good.test", 16))
    zone.set_records(
        {
            "good.test": ['TXT "v=spf1 include:ok.spf.test include:silent.spf.test -all"'],
            "ok.spf.test": ['TXT "v=spf1 include:silent2.spf.test -all"'],
        }
    )
    zone.silent |= {"silent.spf.test", "silent2.spf.test"}
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, timeout=1.0))
    elapsed = time.monotonic() - started
    # Two levels of the tree, each one timeout at most (the lookups of a level side by side).
    assert elapsed < 3.5, elapsed
    found = {f.code: f for f in policy.findings}
    assert found["spf.lookup_failed"].severity is Severity.WARNING
    assert "include:silent.spf.test: no answer" in found["spf.lookup_failed"].message
    assert "include:silent2.spf.test" in found["spf.lookup_failed"].message
    assert not [c for c in found if c.startswith("spf.") and c != "spf.lookup_failed"]


def test_spf_deep_chain_ending_in_silence_is_bounded(zone: DnsServer) -> None:
    """Nine levels of includes, the last one silent: one timeout for it, the rest fast."""
    chain = {f"l{i}.spf.test": [f'TXT "v=spf1 include:l{i + 1}.spf.test -all"'] for i in range(8)}
    zone.rrsets.pop(("good.test", 16))
    zone.set_records({"good.test": ['TXT "v=spf1 include:l0.spf.test -all"'], **chain})
    zone.silent.add("l8.spf.test")
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, timeout=0.5))
    assert time.monotonic() - started < 3.5
    found = {f.code: f for f in policy.findings}
    assert "include:l8.spf.test: no answer" in found["spf.lookup_failed"].message


def test_spf_tree_is_cut_at_its_budget(zone: DnsServer) -> None:
    """Answers that each come within the timeout but slowly: the walk stops at its overall
    budget and says so, whatever the depth of the tree."""
    chain = {f"l{i}.spf.test": [f'TXT "v=spf1 include:l{i + 1}.spf.test -all"'] for i in range(8)}
    zone.set_records(chain)
    resolver = Resolver(nameserver="127.0.0.1", port=zone.port, timeout=1.0)

    def slow(question: str, name: str, timeout: float) -> Answer[Any]:
        time.sleep(0.3)
        return resolver.txt(name, timeout=timeout)

    started = time.monotonic()
    found = follow_spf(
        "good.test", "v=spf1 include:l0.spf.test -all", slow, timeout=1.0, budget=1.0
    )
    assert time.monotonic() - started < 2.0
    assert [f.code for f in found] == ["spf.lookup_failed"]
    assert "over the 1 s budget" in found[0].message
    assert ("l2.spf.test", "TXT") in zone.queries()
    assert ("l7.spf.test", "TXT") not in zone.queries()


def test_dmarc_tree_walk_with_a_silent_parent_is_a_timeout_not_missing(
    dns_server: DnsServer,
) -> None:
    dns_server.silent.add("_dmarc.example.test")
    started = time.monotonic()
    policy = domain_policy("a.b.example.test", [], options(dns_server, timeout=1.0))
    assert time.monotonic() - started < 2.5  # the parents are asked side by side
    found = {f.code: f for f in policy.findings if f.subject == "_dmarc.example.test"}
    assert found["dns.timeout"].severity is Severity.WARNING
    assert not [f for f in policy.findings if f.code.startswith("dmarc.")]


def test_servfail_is_a_failed_lookup(zone: DnsServer) -> None:
    zone.servfail.add("_smtp._tls.good.test")
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone))
    found = {f.code: f for f in policy.findings}
    assert "SERVFAIL" in found["dns.failed"].message
    assert "tls_rpt.missing" not in found


def test_mx_lookup_without_answer_raises(zone: DnsServer) -> None:
    zone.silent.add("good.test")
    started = time.monotonic()
    with pytest.raises(TimeoutFailure, match=r"MX lookup of good\.test timed out"):
        resolve_mx("good.test", options(zone, timeout=1.0))
    assert time.monotonic() - started < 2.5
    zone.silent.clear()
    zone.servfail.add("good.test")
    with pytest.raises(TemporaryError, match="SERVFAIL"):
        resolve_mx("good.test", options(zone))


def test_silent_mx_host_address_is_a_finding_bounded_in_time(zone: DnsServer) -> None:
    zone.silent |= {"mx1.good.test", "a.mail.good.test"}
    started = time.monotonic()
    hosts = resolve_mx("good.test", options(zone, timeout=1.0))
    assert time.monotonic() - started < 2.5  # looked up side by side
    assert [f.code for h in hosts for f in h.findings] == ["mx.unresolvable"] * 2
    assert "could not be looked up" in hosts[0].findings[0].message


def test_tlsa_lookup_failure_raises_rather_than_claiming_no_dane(zone: DnsServer) -> None:
    zone.servfail.add("_25._tcp.mx1.good.test")
    with pytest.raises(TemporaryError, match="TLSA"):
        lookup_tlsa("mx1.good.test", 25, options(zone))


def test_policy_tarpit_is_cut_at_the_timeout(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    policy_server.policies["mta-sts.good.test"] = PolicyReply(GOOD_POLICY, drip=0.2)
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, ca_file, timeout=1.0))
    assert time.monotonic() - started < 3
    assert codes(policy) == {"mta_sts.policy_unreachable": Severity.ERROR}
    assert "did not answer in 1 s" in policy.findings[0].message


def test_endless_policy_body_is_cut_at_the_cap(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    policy_server.policies["mta-sts.good.test"] = PolicyReply(GOOD_POLICY, endless=True)
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, ca_file))
    assert codes(policy) == {"mta_sts.policy_invalid": Severity.ERROR}
    assert "65536" in policy.findings[0].message


def test_endless_http_head_is_cut(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"y" * 40_000 + b"\r\n\r\n"
    policy_server.policies["mta-sts.good.test"] = PolicyReply(raw=head)
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, ca_file))
    assert codes(policy) == {"mta_sts.policy_invalid": Severity.ERROR}
    assert "HTTP head over 16384 bytes" in policy.findings[0].message


def test_huge_chunk_announced_is_refused(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffff\r\nab"
    )
    policy_server.policies["mta-sts.good.test"] = PolicyReply(raw=raw)
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, ca_file))
    assert codes(policy) == {"mta_sts.policy_invalid": Severity.ERROR}


def test_policy_host_that_never_completes_the_handshake(
    zone: DnsServer, policy_server: PolicyServer, ca_file: Path
) -> None:
    policy_server.stall_handshake = True
    started = time.monotonic()
    policy = domain_policy("good.test", ["mx1.good.test"], options(zone, ca_file, timeout=1.0))
    assert time.monotonic() - started < 3
    assert codes(policy) == {"mta_sts.policy_unreachable": Severity.ERROR}
    assert "TLS handshake with mta-sts.good.test:443 took over 1 s" in policy.findings[0].message
