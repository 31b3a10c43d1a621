"""Sink: the OpenSearch side of the pipeline (index setup, `_bulk` requests, probes).

The physical index (`<index>_v1` at first) holds documents and versioned tombstones;
searches use the configured index name, a filtered alias that hides tombstones, and pods
write through the write alias (`<index>_write`, `require_alias=true`), so a reindex can
move both to a new physical index while pods run (`aliases.switch`). Index and aliases are
created on start when absent, safely when several pods start at once. Whole-request
failures become `SinkUnavailableError` (retriable); opensearch-py's own retries are off
so that one policy, the worker's, decides when to try again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import AuthenticationException, AuthorizationException, TransportError
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.serializer import JSONSerializer

from stream_indexer.errors import ConfigError, SinkUnavailableError
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.opensearch.aliases import alias_targets, switch
from stream_indexer.opensearch.auth import (
    client_options,
    lost_certificate_refusal,
    missing_client_certificate,
)
from stream_indexer.opensearch.mapping import index_body
from stream_indexer.settings import Settings
from stream_indexer.tls import tls_failure

log = logging.getLogger(__name__)

NDJSON_HEADERS = {"content-type": "application/x-ndjson"}
#: requests of this many items use the configured timeout; larger ones scale it up
TIMEOUT_REFERENCE_ITEMS = 1_000
#: ... but never more than this many times the configured timeout: a blackholed sink must
#: not hold a partition for minutes behind one large request
MAX_TIMEOUT_SCALE = 4.0
#: the bulk answer trimmed by the cluster to what `bulk.parse_items` reads (status and
#: error per item, in order): about a seventh of the bytes to receive and parse
BULK_RESPONSE_FILTER = {"filter_path": "errors,items.*.status,items.*.error"}
#: ... and, through the write alias, refused when the alias is gone (items answer 404
#: `index_not_found_exception`, which holds the partition) instead of auto-creating a
#: concrete index under the alias's name that no search would ever read
ALIAS_BULK_PARAMS = {**BULK_RESPONSE_FILTER, "require_alias": "true"}


class OrjsonSerializer(JSONSerializer):
    """opensearch-py serializer using orjson: bulk responses are large, parse them fast."""

    def loads(self, s: str | bytes) -> Any:
        return orjson.loads(s)

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        return orjson.dumps(data)


class OpenSearchSink(Lifecycle):
    """Owns the AsyncOpenSearch client; `start()` ensures the index and alias exist."""

    def __init__(self, settings: Settings, *, bulk_index: str | None = None) -> None:
        """`bulk_index` names a physical index to write instead of the write alias (a
        reindex's catch-up writes the index it builds, which no alias points to yet)."""
        self._settings = settings
        self._os = settings.opensearch
        self.alias = settings.opensearch.index
        self.write_alias = settings.write_alias
        self.physical_index = settings.physical_index
        self.bulk_target = bulk_index or self.write_alias
        self._bulk_url = f"/{self.bulk_target}/_bulk"
        self._bulk_params = BULK_RESPONSE_FILTER if bulk_index else ALIAS_BULK_PARAMS
        self._client: AsyncOpenSearch | None = None
        #: the client's TLS context (None over plain HTTP), for `_raise_tls_refusal`
        self._tls: ssl.SSLContext | None = None

    @property
    def client(self) -> AsyncOpenSearch:
        if self._client is None:
            raise RuntimeError("OpenSearchSink is not started")
        return self._client

    async def _start(self) -> None:
        if self._client is None:
            self._client = self._build_client()
        if self.bulk_target != self.write_alias:
            return  # a reindex writes the index it built itself
        if self._os.create_index:
            await self.ensure_index()
        else:
            await self.check_write_alias()

    async def _stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _build_client(self) -> AsyncOpenSearch:
        options = client_options(self._os)
        self._tls = options.get("ssl_context")
        return AsyncOpenSearch(
            hosts=self._os.hosts,
            **options,
            http_compress=self._os.http_compress,
            timeout=self._os.request_timeout_s,
            max_retries=0,
            retry_on_timeout=False,
            serializer=OrjsonSerializer(),
            maxsize=max(10, self._os.max_in_flight_bulks * 2),
        )

    async def ensure_index(self) -> None:
        """Create the physical index, the search alias and the write alias if absent.

        An existing search alias keeps its index: a deployment from before the write alias
        gains one on the index its searches read. A missing write alias with
        `OPENSEARCH__CREATE_INDEX` off is a configuration error (see `check_write_alias`)."""
        client = self.client
        try:
            if await alias_targets(client, self.write_alias):
                return
            searched = await alias_targets(client, self.alias)
            if len(searched) > 1:
                raise ConfigError(
                    f"STREAM_INDEXER_OPENSEARCH__WRITE_ALIAS: {self.write_alias!r} does not exist "
                    f"and the search alias {self.alias!r} spans {len(searched)} indices; "
                    "point the write alias at one of them"
                )
            if not searched and await client.indices.exists(index=self.alias):
                # `exists(index=...)` is also true for an alias: another pod may have
                # created ours since the first look, so ask again before refusing
                searched = await alias_targets(client, self.alias)
                if not searched:
                    raise ConfigError(
                        f"STREAM_INDEXER_OPENSEARCH__INDEX: {self.alias!r} is a concrete index; "
                        "it must be free for the filtered alias (set "
                        "STREAM_INDEXER_OPENSEARCH__PHYSICAL_INDEX to use that index)"
                    )
            target = searched[0] if searched else self.physical_index
            if not searched and not await client.indices.exists(index=target):
                body = index_body(
                    number_of_shards=self._os.number_of_shards,
                    number_of_replicas=self._os.number_of_replicas,
                )
                await client.indices.create(index=target, body=body, ignore=400)
            # adding an alias that exists is a no-op: pods starting together agree
            await switch(client, self.alias, self.write_alias, None, target)
        except (AuthenticationException, AuthorizationException):
            raise  # 401/403: waiting will not fix credentials or permissions
        except (OSConnectionError, TransportError) as exc:
            await self._raise_tls_refusal(exc)  # waiting will not fix a certificate either
            raise SinkUnavailableError(
                f"cannot prepare index {self.physical_index}: {exc}"
            ) from exc

    async def check_write_alias(self) -> None:
        """With index creation off, the write alias must exist: writing to a missing one
        would be refused item by item and hold every partition."""
        try:
            if not await alias_targets(self.client, self.write_alias):
                raise ConfigError(
                    f"STREAM_INDEXER_OPENSEARCH__WRITE_ALIAS: alias {self.write_alias!r} does "
                    "not exist; create it (is_write_index) or set "
                    "STREAM_INDEXER_OPENSEARCH__CREATE_INDEX=true"
                )
        except (AuthenticationException, AuthorizationException):
            raise
        except (OSConnectionError, TransportError) as exc:
            await self._raise_tls_refusal(exc)
            raise SinkUnavailableError(f"cannot read alias {self.write_alias}: {exc}") from exc

    async def _raise_tls_refusal(self, exc: BaseException) -> None:
        """Raise what `exc` says about certificates, so start-up fails naming the setting
        instead of waiting forever: a client certificate the cluster wants and none is set
        (`ClientCertificateRequiredError`), a refused certificate or host name (`exc`
        itself), or the TLS 1.3 refusal a connection reset hid. Return when it says nothing
        (an outage: refused, timed out, closed without an alert)."""
        missing = missing_client_certificate(exc, self._os)
        if missing is not None:
            raise missing from exc
        if tls_failure(exc) is not None:
            raise exc
        refusal = await lost_certificate_refusal(
            exc, self._os.hosts, self._tls, self._os.request_timeout_s
        )
        if refusal is not None:
            raise missing_client_certificate(refusal, self._os) or refusal from exc

    def bulk_timeout(self, items: int) -> float:
        """Request timeout for a bulk of `items`: large batches get proportionally longer."""
        scale = min(MAX_TIMEOUT_SCALE, max(1.0, items / TIMEOUT_REFERENCE_ITEMS))
        return self._os.request_timeout_s * scale

    async def bulk(self, body: bytes, items: int) -> dict[str, Any]:
        """Send one `_bulk` request; return the decoded response (per-item results inside)."""
        try:
            response: dict[str, Any] = await self.client.transport.perform_request(
                "POST",
                self._bulk_url,
                params=self._bulk_params,
                body=body,
                headers=NDJSON_HEADERS,
                timeout=self.bulk_timeout(items),
            )
        except OSConnectionError as exc:
            raise SinkUnavailableError(f"bulk request failed: {exc.__class__.__name__}") from exc
        except TransportError as exc:
            raise SinkUnavailableError(
                f"bulk request rejected with HTTP {exc.status_code}: {exc.error}"
            ) from exc
        return response

    async def ping(self, timeout_s: float | None = None) -> bool:
        """A cheap liveness probe of the cluster (used while the circuit is open), bounded
        by `timeout_s`: a blackholed sink never answers, and recovery must not wait for the
        bulk request timeout to notice it is back."""
        timeout = timeout_s or self._os.request_timeout_s
        try:
            await asyncio.wait_for(
                self.client.transport.perform_request("HEAD", "/", timeout=timeout), timeout
            )
        except Exception:
            return False
        return True
