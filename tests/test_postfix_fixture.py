"""The Postfix fixture itself: the limits other tests rely on are really in force."""

from __future__ import annotations

import smtplib

import pytest
from servers.postfix import DATA_REFUSED_SENDER, REFUSED, REJECT_HEADER, PostfixServer


def test_refused_map_and_hard_error_limit_in_one_segment(postfix: PostfixServer) -> None:
    mark = postfix.log_mark()
    with smtplib.SMTP(postfix.host, postfix.plain_port, timeout=10) as client:
        client.ehlo()
        assert client.mail("a@example.org")[0] == 250
        codes = [client.rcpt(address)[0] for address in REFUSED]
        assert codes == [code for code, _ in REFUSED.values()]
        # The hard limit (3) was reached with the third error: the 421 is already here.
        assert client.sock is not None
        client.sock.settimeout(2)
        assert client.getreply()[0] == 421
    postfix.wait_log(r"too many errors after RCPT", since=mark)


def test_add_service_gives_a_fresh_connection_rate_limit(postfix: PostfixServer) -> None:
    port = postfix.add_service(smtpd_client_connection_rate_limit=2)
    codes = []
    for _ in range(3):
        client = smtplib.SMTP(timeout=10)
        codes.append(client.connect(postfix.host, port)[0])
        client.close()
    assert codes == [220, 220, 421]


def test_refusals_at_data_and_after_the_dot(postfix: PostfixServer) -> None:
    with smtplib.SMTP(postfix.host, postfix.plain_port, timeout=10) as client:
        client.ehlo()
        assert client.rcpt("any@refused.test")[0] == 503  # no MAIL yet: an error, not 554
        client.rset()
        client.mail("a@example.org")
        assert client.rcpt("any@refused.test")[0] == 554
    with smtplib.SMTP(postfix.host, postfix.plain_port, timeout=10) as client:
        client.mail(DATA_REFUSED_SENDER)
        assert client.rcpt("bob@example.org")[0] == 250
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.data(b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 554
    with smtplib.SMTP(postfix.host, postfix.plain_port, timeout=10) as client:
        client.mail("a@example.org")
        client.rcpt("bob@example.org")
        # smtplib returns (not raises) the reply after the final dot.
        code, text = client.data(f"{REJECT_HEADER}\r\nSubject: x\r\n\r\nx\r\n".encode())
        assert code == 550 and text.startswith(b"5.7.1")
