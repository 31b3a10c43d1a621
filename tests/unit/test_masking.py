"""The one secret masker: URLs split at the last `@`, remembered values, and the log filter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stream_indexer.masking import MASK, forget_all, mask_text, mask_url, remember
from stream_indexer.observability.logging_setup import SecretMaskingFilter


@pytest.fixture(autouse=True)
def no_remembered_secrets() -> Iterator[None]:
    forget_all()
    yield
    forget_all()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        # user info ends at the LAST '@', as urllib and opensearch-py read it
        ("http://user:p@ss@h:9200", f"http://user:{MASK}@h:9200"),
        ("postgresql://u:a@b@c@db:5432/app", f"postgresql://u:{MASK}@db:5432/app"),
        # percent-encoded passwords are masked whole
        ("postgresql://u:p%40ss%23x@db/app", f"postgresql://u:{MASK}@db/app"),
        # a raw '#', '?' or '/' breaks the URL apart: the masker still hides it all
        ("postgresql://u:pa#ss@db:5432/app", f"postgresql://u:{MASK}@db:5432/app"),
        ("postgresql://u:pa/ss@db/app", f"postgresql://u:{MASK}@db/app"),
        ("http://u:pa?ss@h:9200", f"http://u:{MASK}@h:9200"),
        # multi-host DSN: one user info for the host list
        ("postgresql://u:pw@h1:5432,h2:5433/app", f"postgresql://u:{MASK}@h1:5432,h2:5433/app"),
        # no user info: untouched
        ("http://h:9200/prefix", "http://h:9200/prefix"),
        ("postgresql:///app?host=/run/pg", "postgresql:///app?host=/run/pg"),
        # a token as the whole user info, and no scheme at all
        ("https://tok3n@h", f"https://{MASK}@h"),
        ("user:pw@127.0.0.1:9200", f"user:{MASK}@127.0.0.1:9200"),
        # passwords as query parameters
        (
            "postgresql://db/app?password=pw&sslmode=x",
            f"postgresql://db/app?password={MASK}&sslmode=x",
        ),
        ("postgresql://db/app?sslpassword=pw", f"postgresql://db/app?sslpassword={MASK}"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_masks_each_url_of_a_host_list_and_leaves_the_rest() -> None:
    text = "hosts http://a:x@y@h1:9200,https://b:z@h2 failed: listing 42 at 12:30"
    assert mask_text(text) == (
        f"hosts http://a:{MASK}@h1:9200,https://b:{MASK}@h2 failed: listing 42 at 12:30"
    )


def test_remembered_secrets_are_masked_anywhere_longest_first() -> None:
    remember(["s3cret", "s3cret-pw"])
    text = "auth failed for s3cret-pw; invalid literal for int(): 's3cret'"
    assert mask_text(text) == f"auth failed for {MASK}; invalid literal for int(): '{MASK}'"
    assert mask_text("dsn postgresql://u:s3cret-pw@db/app") == f"dsn postgresql://u:{MASK}@db/app"


def test_extra_values_are_masked_for_one_call_only() -> None:
    assert mask_text("value 'hunter22' rejected", ["hunter22"]) == f"value '{MASK}' rejected"
    assert mask_text("value 'hunter22' rejected") == "value 'hunter22' rejected"


def test_very_short_values_are_not_masked_in_free_text() -> None:
    remember(["ab"])
    assert mask_text("table ab") == "table ab"


def test_the_log_filter_masks_message_arguments_exception_and_extras() -> None:
    remember(["sasl-s3cret"])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "login %s", ("sasl-s3cret",), None)
    record.detail = "password sasl-s3cret rejected"
    try:
        raise ValueError("postgresql://u:pw@db/app sasl-s3cret")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert SecretMaskingFilter().filter(record)
    assert record.getMessage() == f"login {MASK}"
    assert record.detail == f"password {MASK} rejected"
    assert record.exc_text is not None
    assert "sasl-s3cret" not in record.exc_text and ":pw@" not in record.exc_text


def test_a_dead_letter_never_stores_a_secret_its_error_quoted() -> None:
    """The error text goes to the table's last_error and the x-dlq-error-message header."""
    from types import SimpleNamespace

    from stream_indexer.dlq.headers import dead_letter_headers
    from stream_indexer.dlq.letters import dead_letter_for

    remember(["src-s3cret"])
    record = SimpleNamespace(
        topic="t", partition=0, offset=1, timestamp=0, key=b"1", value=b"{}", headers=[]
    )
    error = OSError("cannot load from postgresql://ro:src-s3cret@replica/db: src-s3cret")
    letter = dead_letter_for(record, error, attempts=1, consumer_group="g")
    assert "src-s3cret" not in letter.error_message
    assert b"src-s3cret" not in b"".join(value for _, value in dead_letter_headers(letter))
