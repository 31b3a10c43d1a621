"""Core settings, maintenance jobs: `reindex` and `verify`."""

from __future__ import annotations

from pydantic import Field, field_validator

from stream_indexer.addresses import normalize_host
from stream_indexer.errors import AddressError
from stream_indexer.settings.base import Section


class ReindexSettings(Section):
    """`stream-indexer reindex`: how fast the backfill goes and when the catch-up is done."""

    page_size: int = Field(
        default=2_000, ge=1, description="source rows per backfill page (the largest the AIMD uses)"
    )
    load_settings: bool = Field(
        default=True,
        description="fill the new index with refresh_interval -1 and 0 replicas, and give it "
        "its own settings (refreshed, replicas assigned) just before the cutover",
    )
    replicas_wait_s: float = Field(
        default=600.0,
        gt=0,
        description="how long the cutover waits for the new index to be as healthy as the old "
        "one (replicas assigned) before it gives up, aliases unmoved",
    )
    min_page_size: int = Field(
        default=50, ge=1, description="the smallest page the backfill backs off to"
    )
    bulk_in_flight: int = Field(
        default=2, ge=1, description="bulk requests one backfill page is split into, sent at once"
    )
    max_rate: float = Field(
        default=0.0, ge=0, description="backfill documents per second; 0: no limit (--max-rate)"
    )
    grace_s: float | None = Field(
        default=None,
        ge=0,
        description="catch-up time after the cutover; unset: the longest a bulk request can "
        "stay in flight (OPENSEARCH__REQUEST_TIMEOUT_S x 4) plus 5 s (--grace-s)",
    )
    catchup_max_lag: int = Field(
        default=500,
        ge=0,
        description="records the catch-up group may trail the live group by and be done",
    )
    latency_factor: float = Field(
        default=3.0,
        gt=1.0,
        description="a bulk this many times slower than the best seen halves the page",
    )
    live_lag_growth: int = Field(
        default=1_000,
        ge=1,
        description="live-group lag growth (records) between two probes that halves the page",
    )
    live_lag_max_s: float = Field(
        default=3.0,
        ge=0,
        description="hold the backfill while the live group is more than this many seconds "
        "of its traffic behind and committing; 0: never hold",
    )
    live_stall_s: float = Field(
        default=10.0,
        gt=0,
        description="a live group that has committed nothing for this long is not waited for "
        "(its pods are down, not stuck behind the backfill)",
    )
    live_hold_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="holds for the live group add up to at most this share of a phase's time "
        "(the rebuild always gets the rest)",
    )
    live_hold_max_s: float = Field(
        default=60.0,
        gt=0,
        description="the longest one hold for the live group lasts before a page goes anyway",
    )
    probe_interval_s: float = Field(
        default=0.5, gt=0, description="how often the live group's lag is read"
    )
    catchup_in_flight: int = Field(
        default=2,
        ge=1,
        description="bulk requests the catch-up group keeps in flight (the live pods' "
        "OPENSEARCH__MAX_IN_FLIGHT_BULKS is theirs alone)",
    )
    progress_interval_s: float = Field(
        default=5.0, gt=0, description="seconds between progress log lines (not on a terminal)"
    )


class VerifySettings(Section):
    """`stream-indexer verify`: how the drift check reads and where it reports."""

    sample: int = Field(
        default=1_000,
        ge=1,
        le=10_000,
        description="source rows and live documents checked without flags",
    )
    page_size: int = Field(default=1_000, ge=1, le=10_000, description="rows and docs per read")
    recheck_after_s: float = Field(
        default=5.0,
        ge=0,
        description="drift found is looked up again after this long (events still in flight)",
    )
    source_retry_s: float = Field(
        default=60.0,
        gt=0,
        description="how long a check waits for a source database that went away (a restart, "
        "a failover, a dropped connection) before it gives up (exit 1)",
    )
    pushgateway_url: str | None = Field(
        default=None, description="Prometheus Pushgateway the run's metrics are pushed to"
    )
    pushgateway_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("pushgateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_host(value)
        except AddressError as exc:
            raise ValueError(f"(value not shown) {exc}") from None


__all__ = ["ReindexSettings", "VerifySettings"]
