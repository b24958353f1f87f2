"""`mailctl sink`'s certificate: the kept one under the state directory, and `--ca-out`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mailctl.errors import CantCreateError, UsageError

if TYPE_CHECKING:
    from mailctl.sink.config import SinkConfig


def with_kept_certificate(
    config: SinkConfig, *, ca_out: Path | None, warn: Callable[[str], None]
) -> SinkConfig:
    """Give a TLS sink without --cert/--key the kept certificate; write it to `ca_out` too.

    The pair lives in `state_dir()/sink` and is reused from run to run, so an account that
    trusts it (`--ca-file`, the ready-file's `cert_file`) keeps working after the sink stops.
    When that folder cannot be written (a read-only home), the sink still runs, with a
    throwaway pair and a warning, unless --ca-out asked for the kept one. Raises UsageError
    (--ca-out without TLS, or beside --cert), CantCreateError (writing).
    """
    from mailctl.config.paths import state_dir
    from mailctl.models import Security
    from mailctl.sink.certs import stable_certificate
    from mailctl.store.files import write_atomic

    if config.security is Security.NONE:
        if ca_out is not None:
            raise UsageError("--ca-out needs --tls or --starttls", hint="add --starttls")
        return config
    if config.cert_file is not None:
        if ca_out is not None:
            raise UsageError(
                "--ca-out writes the sink's own certificate, and --cert replaces it",
                hint="trust the CA that issued your --cert instead",
            )
        return config
    try:
        cert, key = stable_certificate(state_dir() / "sink")
    except CantCreateError as err:
        if ca_out is not None:
            raise
        warn(f"{err.message}; using a throwaway certificate that is deleted when the sink stops")
        return config
    if ca_out is not None:
        from mailctl.inputs import PEM_LIMIT, read_file

        pem = read_file(cert, what="the sink certificate", limit=PEM_LIMIT)
        write_atomic(ca_out, pem, mode=0o644, what="CA certificate")
    return replace(config, cert_file=cert, key_file=key)
