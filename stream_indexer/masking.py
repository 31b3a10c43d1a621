"""Core: the one secret masker, used by settings, logs, CLI errors, health bodies and dead letters.

Credentials reach text in two shapes: inside a URL or DSN (`scheme://user:password@host`) and
as bare values a driver may quote (a SASL password, a password decoded from a DSN). `mask_url`
masks the first shape; `mask_text` masks both in free text, the bare values being the ones
`remember()` was given (settings register theirs when they load).

User info ends at the *last* `@`, as URL parsers split it: a raw `@` in a password must not
leave its tail visible. Masking errs towards hiding: everything between `scheme://` and the
last `@` of a URL goes, even when a raw `#`, `?` or `/` in the password broke the URL apart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

MASK = "**********"

#: bare secrets shorter than this are not masked in free text: masking every "ab" in a log
#: line would garble it and still not hide a password that short (positional masking of
#: URLs, config show and error messages does not depend on length)
MIN_BARE_SECRET_CHARS = 4

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;\s])[a-z_]*(?:password|passwd|secret|token)=)[^&\s]*")

_lock = threading.Lock()
_known: frozenset[str] = frozenset()
_known_pattern: re.Pattern[str] | None = None


def mask_url(url: str) -> str:
    """`url` with its password (from the first `:` of the user info to the last `@`) and
    password-like query values masked; user info without a `:` is all masked (a token).

    Works on one address; a value without `scheme://` (`user:pw@host:9200`) is masked too.
    """
    match = _SCHEME.match(url)
    head_end = match.end() if match else 0
    head, rest = url[:head_end], url[head_end:]
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:{MASK}" if colon and "/" not in user else MASK) + rest[at:]
    return _SECRET_PARAM.sub(rf"\g<1>{MASK}", head + rest)


def mask_text(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every URL's user info, and every remembered (or `extra`) secret, masked."""
    if "://" in text or "@" in text:
        text = _mask_urls(text)
    pattern = _known_pattern
    extra = [value for value in extra if len(value) >= MIN_BARE_SECRET_CHARS]
    if extra:
        pattern = _pattern(_known | frozenset(extra))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def _mask_urls(text: str) -> str:
    """Each whitespace-separated word that holds a URL: from its `scheme://` to the next
    scheme (a comma-separated host list) or the end of the word goes through `mask_url`."""
    words = re.split(r"(\s+)", text)
    for index, word in enumerate(words):
        starts = [m.start() for m in _SCHEME.finditer(word)]
        if not starts:
            continue
        pieces = [word[: starts[0]]]
        for begin, end in zip(starts, [*starts[1:], len(word)], strict=True):
            pieces.append(mask_url(word[begin:end]))
        words[index] = "".join(pieces)
    return "".join(words)


def remember(secrets: Iterable[str]) -> None:
    """Add secret values that `mask_text` hides wherever they appear (process-wide)."""
    global _known, _known_pattern
    values = {value for value in secrets if len(value) >= MIN_BARE_SECRET_CHARS}
    with _lock:
        if values <= _known:
            return
        _known = _known | values
        _known_pattern = _pattern(_known)


def forget_all() -> None:
    """Drop every remembered secret (tests, and a process that reloads its settings)."""
    global _known, _known_pattern
    with _lock:
        _known, _known_pattern = frozenset(), None


def secret_forms(value: str) -> set[str]:
    """A secret as it may appear in text: as given, percent-decoded and percent-encoded."""
    return {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}


def strings_in(value: Any) -> list[str]:
    """Every string inside `value` (nested lists, dicts, secrets), each in all its forms: what
    a message about a rejected input must not contain."""
    if isinstance(value, str):
        return [value, *secret_forms(value)]
    if hasattr(value, "get_secret_value"):
        return strings_in(value.get_secret_value())
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in strings_in(item)]
    return []


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(values, key=len, reverse=True)  # longest first: a DSN before its password
    if not ordered:
        return None
    return re.compile("|".join(re.escape(value) for value in ordered))


__all__ = [
    "MASK",
    "forget_all",
    "mask_text",
    "mask_url",
    "remember",
    "secret_forms",
    "strings_in",
]
