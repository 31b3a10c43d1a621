"""Core: client TLS for Kafka and OpenSearch, built once from settings, and the test that tells
a certificate problem (wait will not fix it) from a network one (wait may).

Every client context verifies the server's certificate and host name unless the operator
turned verification off by name; a CA, certificate or key that cannot be loaded is a
`ConfigError` naming the setting, never a reason to connect without it. Postgres TLS is not
here: asyncpg reads it from the DSN (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from stream_indexer.errors import ClientCertificateRequiredError, ConfigError

#: OpenSSL reasons that mean "this peer will never accept / be accepted with this material"
_PERMANENT_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "WRONG_VERSION_NUMBER",
    }
)


#: alerts a server answers a missing or untrusted client certificate with (OpenSSL reasons);
#: "handshake failure" is how TLS 1.2 servers (OpenSSL's too) refuse a missing one
_CLIENT_CERTIFICATE_ALERTS = frozenset(
    {
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
    }
)


@dataclass(frozen=True)
class TlsFiles:
    """The TLS material of one client, and the setting names that configure each part."""

    cafile: str | None
    certfile: str | None
    keyfile: str | None
    key_password: str | None
    verify: bool
    check_hostname: bool
    #: environment variable names, for error messages: cafile, certfile, keyfile, password
    names: tuple[str, str, str, str]


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context: system CAs plus `cafile`, our certificate when given, verification
    as configured. Unreadable material raises `ConfigError` naming its setting."""
    ca_name, cert_name, key_name, password_name = files.names
    context = ssl.create_default_context()
    if files.cafile:
        try:
            context.load_verify_locations(cafile=files.cafile)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{ca_name}: cannot load the CA bundle: {_reason(exc)}") from None
    if files.keyfile and not files.certfile:
        raise ConfigError(f"{key_name} is set but {cert_name} is not")
    if files.certfile:
        try:
            context.load_cert_chain(files.certfile, files.keyfile, password=files.key_password)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{cert_name} / {key_name}: cannot load the client certificate and key "
                f"({_reason(exc)}; a wrong or missing {password_name}?)"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{cert_name} / {key_name}: cannot read the client certificate or key: "
                f"{_reason(exc)}"
            ) from None
    if not files.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif not files.check_hostname:
        context.check_hostname = False
    return context


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it, each once: the cause chain and what drivers
    wrap (opensearch-py keeps the original in `.info`, aiohttp in `.certificate_error` or
    `.os_error`)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += _wrapped(current)
        pending += [current.__cause__, current.__context__]


def _wrapped(exc: BaseException) -> list[BaseException]:
    inner = [getattr(exc, name, None) for name in ("info", "certificate_error", "os_error")]
    return [item for item in inner if isinstance(item, BaseException)]


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The certificate or handshake refusal behind `exc` (see `causes`), if that is what
    it is. Only refusals that retrying cannot fix count: an EOF in mid-handshake (a
    restarting server) is a network problem, not a certificate one. A driver's wrapper
    counts only for what it wraps (some subclass ssl errors)."""
    for current in causes(exc):
        if not _wrapped(current) and _permanent(current):
            assert isinstance(current, ssl.SSLError)
            return current
    return None


def wants_client_certificate(exc: BaseException) -> ssl.SSLError | None:
    """The server's alert behind `exc` if it is one a server sends for a missing client
    certificate, to be read so only when we sent none: with a certificate, "handshake
    failure" may as well mean no common cipher or TLS version. Looks through causes and
    drivers' wrappers as `tls_failure` does."""
    for current in causes(exc):
        if (
            isinstance(current, ssl.SSLError)
            and getattr(current, "reason", None) in _CLIENT_CERTIFICATE_ALERTS
        ):
            return current
    return None


#: how long a silent TLS 1.3 server is given to refuse our certificate (it answers in one
#: round trip when it does); silence means it accepted it
VERDICT_WAIT_S = 5.0


def missing_certificate(
    exc: BaseException, *, server: str, peer: str, cert_setting: str, key_setting: str
) -> ClientCertificateRequiredError | None:
    """The start-up error for `exc` when it carries the alert a `server` ("Kafka") sends
    for a missing client certificate, naming the settings to set; None otherwise. Only for
    a client that sent no certificate (see `wants_client_certificate`)."""
    alert = wants_client_certificate(exc)
    if alert is None:
        return None
    return ClientCertificateRequiredError(
        f"{server} requires a TLS client certificate and none is set (the {peer} sent "
        f"{describe(alert)}): set {cert_setting} and {key_setting} to a certificate signed "
        f"by a CA the {peer} trusts"
    )


async def silent_verdict(
    host: str,
    port: int,
    context: ssl.SSLContext,
    *,
    timeout_s: float = 10.0,
    wait_s: float = VERDICT_WAIT_S,
) -> OSError | None:
    """Connect to `host:port` once, send nothing, and wait up to `wait_s` for the server to
    end the connection; return the error that ended it (in the handshake or after), None when
    the server stayed silent or closed without one.

    Under TLS 1.3 a server judges our certificate only after our side of the handshake is
    done. A request sent meanwhile can reach it while it is closing with its "certificate
    required" alert: the close becomes a reset and the alert is lost (the client sees a
    connection reset, as from a server going down). Sent nothing, the alert arrives intact:
    `tls_failure` or `wants_client_certificate` of the returned error reads it.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout_s
        )
    except OSError as exc:  # TimeoutError included
        return exc
    try:
        await asyncio.wait_for(reader.read(1), min(timeout_s, wait_s))
    except TimeoutError:
        return None  # silence: our certificate (or its absence) is accepted
    except OSError as exc:
        return exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer.wait_closed(), timeout_s)
    return None


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    return isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in _PERMANENT_REASONS


def describe(failure: ssl.SSLError) -> str:
    """A short reason for a TLS refusal (`certificate verify failed: IP address mismatch`)."""
    if isinstance(failure, ssl.SSLCertVerificationError) and failure.verify_message:
        return f"certificate verify failed: {failure.verify_message}"
    return str(getattr(failure, "reason", None) or failure).replace("_", " ").lower()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None):
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


__all__ = [
    "VERDICT_WAIT_S",
    "TlsFiles",
    "causes",
    "client_context",
    "describe",
    "missing_certificate",
    "silent_verdict",
    "tls_failure",
    "wants_client_certificate",
]
