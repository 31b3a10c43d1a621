"""Postgres over TLS for the DLQ and source DSNs: `sslmode` up to `verify-full`,
`sslrootcert`, client certificates (`sslcert`, `sslkey`, `sslpassword`), all DSN parameters
that asyncpg reads, so the service, `migrate`, the DLQ tools and the outbox relay share them.

The embedded PostgreSQL wheel is built without SSL (`ssl=on` is refused: "SSL is not
supported by this build"), so the TLS endpoint is a `TlsProxy` speaking Postgres's TLS
preamble (SSLRequest, `S`, then a real handshake) in front of the session's server; it
refuses plaintext clients and, on the mTLS port, clients without a certificate of the CA.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import asyncpg
import pytest
from support.tls_endpoints import KEY_PASSWORD, Pki, TlsProxy

from stream_indexer.app.migrate import migrate_up
from stream_indexer.app.startup import create_pool, until_ready
from stream_indexer.app.startup_errors import Step, explain
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.masking import mask_text
from stream_indexer.settings import load_settings


@dataclass
class TlsPostgres:
    port: int
    mtls_port: int
    proxies: tuple[TlsProxy, TlsProxy]


@pytest.fixture(scope="module")
def tls_postgres(pki: Pki, stack: StackEndpoints) -> Iterator[TlsPostgres]:
    upstream = urlsplit(stack.postgres_dsn)
    assert upstream.hostname and upstream.port, "needs Postgres on TCP"
    target = (upstream.hostname, upstream.port)
    plain = TlsProxy(pki.server_context(), target, postgres=True).start()
    mtls = TlsProxy(pki.server_context(require_client_cert=True), target, postgres=True).start()
    yield TlsPostgres(plain.port, mtls.port, (plain, mtls))
    plain.close()
    mtls.close()


def dsn(port: int, pki: Pki, host: str = "127.0.0.1", **params: str) -> str:
    query = {"sslmode": "verify-full", "sslrootcert": pki.ca_file, **params}
    return f"postgresql://postgres@{host}:{port}/postgres?{urlencode(query)}"


async def connects(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT true"))
    finally:
        await conn.close()


async def test_verify_full_with_the_root_ca(tls_postgres: TlsPostgres, pki: Pki) -> None:
    before = tls_postgres.proxies[0].connections
    assert await connects(dsn(tls_postgres.port, pki))
    assert tls_postgres.proxies[0].connections == before + 1


async def test_plaintext_is_refused(tls_postgres: TlsPostgres, pki: Pki) -> None:
    with pytest.raises((ConnectionError, OSError, asyncpg.PostgresError)):
        await connects(dsn(tls_postgres.port, pki, sslmode="disable"))


async def test_a_wrong_ca_fails_at_start_naming_the_dsn(
    tls_postgres: TlsPostgres, pki: Pki
) -> None:
    url = dsn(tls_postgres.port, pki, sslrootcert=pki.other_ca_file)
    settings = load_settings({"postgres.dsn": url})
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        # not retried: waiting would never fix it
        await asyncio.wait_for(
            until_ready("postgres", lambda: create_pool(settings), asyncio.Event()), 10
        )
    line = str(explain(Step.POSTGRES, caught.value))
    assert "sslrootcert in STREAM_INDEXER_POSTGRES__DSN" in line and "\n" not in line


async def test_verify_full_checks_the_host_name_and_verify_ca_does_not(
    tls_postgres: TlsPostgres, pki: Pki
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await connects(dsn(tls_postgres.port, pki, host="localhost"))
    assert "Hostname mismatch" in str(explain(Step.POSTGRES, caught.value))
    assert await connects(dsn(tls_postgres.port, pki, host="localhost", sslmode="verify-ca"))


async def test_client_certificate_with_an_encrypted_key(
    tls_postgres: TlsPostgres, pki: Pki, pg_dsn: str
) -> None:
    # asyncpg reports the server's refusal as a closed connection, not as the TLS alert
    with pytest.raises((OSError, asyncpg.ConnectionDoesNotExistError)):
        await connects(dsn(tls_postgres.mtls_port, pki))
    database = urlsplit(pg_dsn).path.lstrip("/")
    secure = dsn(
        tls_postgres.mtls_port,
        pki,
        sslcert=pki.client_cert,
        sslkey=pki.client_key_encrypted,
        sslpassword=KEY_PASSWORD,
    ).replace("/postgres?", f"/{database}?")
    settings = load_settings({"postgres.dsn": secure})
    assert KEY_PASSWORD not in mask_text(f"connecting to {secure}")
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    # the `migrate` command's path: the same DSN, the same TLS
    assert await migrate_up(settings.postgres.dsn.get_secret_value())
