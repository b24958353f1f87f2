"""MTA-STS end to end (RFC 8461 3, 4): the TXT record, the policy fetched over HTTPS from
`mta-sts.DOMAIN` (its address looked up through the run's nameserver), the MX check."""

from __future__ import annotations

from collections.abc import Sequence

from mailctl.core.probe.findings import Finding, Severity
from mailctl.core.probe.mta_sts import (
    MAX_AGE_SHORT,
    POLICY_LIMIT,
    StsPolicy,
    parse_policy,
    parse_sts_txt,
    sts_records,
    unmatched,
)
from mailctl.errors import CertificateError, MailctlError, ResponseLimitError, TlsError
from mailctl.protocols.dnslookup import Resolver
from mailctl.protocols.httpsget import HttpsClient
from mailctl.text import quote

POLICY_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 3.3
# A domain may publish several addresses; a dead first one should not hide a live second.
_ADDRESSES_TRIED = 2


def check_mta_sts(
    domain: str,
    texts: Sequence[str],
    mx_names: Sequence[str],
    *,
    resolver: Resolver,
    client: HttpsClient,
    timeout: float,
) -> tuple[StsPolicy | None, list[Finding]]:
    """The policy (or None) and the MTA-STS findings for `domain`, given its TXT records at
    `_mta-sts.DOMAIN` and its MX host names."""
    name = f"_mta-sts.{domain}"
    records = sts_records(texts)
    if not records:
        return None, [
            _finding(
                Severity.WARNING,
                "mta_sts.missing",
                domain,
                f"{domain} has no MTA-STS record at {name}: senders may deliver without TLS",
                f'publish "v=STSv1; id=YYYYMMDD01" at {name} and a policy at '
                f"https://mta-sts.{domain}{POLICY_PATH}",
            )
        ]
    if len(records) > 1:
        return None, [
            _finding(
                Severity.ERROR,
                "mta_sts.record_invalid",
                domain,
                f"{name} has {len(records)} v=STSv1 records; RFC 8461 3.1 then applies none",
                "keep one v=STSv1 record",
            )
        ]
    policy_id, problem = parse_sts_txt(records[0])
    if policy_id is None:
        return None, [
            _finding(
                Severity.ERROR,
                "mta_sts.record_invalid",
                domain,
                f"the MTA-STS record at {name} does not parse: {problem}",
                'write it as "v=STSv1; id=<1-32 letters and digits>;"',
            )
        ]
    body, failure = _fetch(domain, resolver=resolver, client=client, timeout=timeout)
    if failure is not None:
        return None, [failure]
    assert body is not None
    policy, problem = parse_policy(body, policy_id)
    if policy is None:
        return None, [
            _finding(
                Severity.ERROR,
                "mta_sts.policy_invalid",
                domain,
                f"the MTA-STS policy of {domain} does not parse: {problem}",
                "fix the policy file (RFC 8461 3.2: version, mode, max_age, mx lines)",
            )
        ]
    return policy, _policy_findings(domain, policy, mx_names)


def _policy_findings(domain: str, policy: StsPolicy, mx_names: Sequence[str]) -> list[Finding]:
    found: list[Finding] = []
    missing = unmatched(policy, mx_names) if policy.mode != "none" else []
    if missing:
        # RFC 8461 5: in enforce mode a sender refuses an MX the policy does not list.
        enforce = policy.mode == "enforce"
        found.append(
            _finding(
                Severity.ERROR if enforce else Severity.WARNING,
                "mta_sts.mx_mismatch",
                domain,
                f"MX host(s) {', '.join(missing[:5])} of {domain} match no mx: line of its "
                f"MTA-STS policy ({', '.join(policy.mx[:5])})"
                + (": senders will not deliver to them" if enforce else ""),
                "add the MX host names to the policy's mx: lines and change the id",
            )
        )
    if policy.mode == "testing":
        found.append(
            _finding(
                Severity.INFO,
                "mta_sts.mode_testing",
                domain,
                f"{domain}'s MTA-STS policy is in testing mode: failures are reported, "
                "not enforced",
            )
        )
    elif policy.mode == "none":
        found.append(
            _finding(
                Severity.INFO,
                "mta_sts.mode_none",
                domain,
                f"{domain}'s MTA-STS policy is mode none: MTA-STS is switched off",
            )
        )
    if policy.max_age < MAX_AGE_SHORT:
        found.append(
            _finding(
                Severity.WARNING,
                "mta_sts.max_age_short",
                domain,
                f"{domain}'s MTA-STS max_age is {policy.max_age} s: senders forget the "
                "policy within a day",
                "set max_age to weeks (RFC 8461 3.2), e.g. 1209600",
            )
        )
    return found


def _fetch(
    domain: str, *, resolver: Resolver, client: HttpsClient, timeout: float
) -> tuple[bytes | None, Finding | None]:
    """The policy body, or a finding saying why there is none."""
    host = f"mta-sts.{domain}"
    url = f"https://{host}{POLICY_PATH}"
    addresses = resolver.addresses(host)
    if not addresses.found:
        why = addresses.detail or {"nxdomain": "does not exist"}.get(
            addresses.status.value, "has no address record"
        )
        return None, _unreachable(domain, f"{host} {why}")
    error: MailctlError | None = None
    for address in addresses.values[:_ADDRESSES_TRIED]:
        try:
            reply = client.get(host, address, POLICY_PATH, timeout=timeout, max_body=POLICY_LIMIT)
        except (CertificateError, TlsError) as err:
            return None, _finding(
                Severity.ERROR,
                "mta_sts.policy_tls",
                domain,
                f"{url}: {err}",
                f"serve the policy with a valid certificate for {host} (RFC 8461 3.3)",
            )
        except ResponseLimitError as err:
            return None, _finding(
                Severity.ERROR,
                "mta_sts.policy_invalid",
                domain,
                f"{url}: {err}",
                f"keep the policy under {POLICY_LIMIT} bytes",
            )
        except MailctlError as err:
            error = err
            continue
        return _reply_body(domain, url, reply.status, reply.headers, reply.body)
    return None, _unreachable(domain, f"{url}: {error}")


def _reply_body(
    domain: str, url: str, status: int, headers: dict[str, str], body: bytes
) -> tuple[bytes | None, Finding | None]:
    if 300 <= status < 400:
        return None, _unreachable(
            domain, f"{url} answered HTTP {status}: RFC 8461 3.3 forbids following redirects"
        )
    if status != 200:
        return None, _unreachable(domain, f"{url} answered HTTP {status}")
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        # RFC 8461 3.2: the policy is served as text/plain.
        return None, _finding(
            Severity.ERROR,
            "mta_sts.policy_invalid",
            domain,
            f"{url} is served as {quote(media_type) if media_type else 'no media type'}, "
            "not text/plain",
            "serve the policy with Content-Type: text/plain",
        )
    return body, None


def _unreachable(domain: str, why: str) -> Finding:
    return _finding(
        Severity.ERROR,
        "mta_sts.policy_unreachable",
        domain,
        f"MTA-STS is announced but the policy cannot be fetched: {why}",
        f"serve the policy at https://mta-sts.{domain}{POLICY_PATH}",
    )


def _finding(
    severity: Severity, code: str, subject: str, message: str, fix: str | None = None
) -> Finding:
    return Finding(severity, code, subject, message, fix)
