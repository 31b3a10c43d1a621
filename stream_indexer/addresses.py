"""Core: parse, check and normalise the addresses settings accept (Postgres DSNs, OpenSearch
hosts), so that a bad one fails at load instead of inside a driver that quotes it.

Drivers disagree on where user info ends: urllib (and opensearch-py) split at the last `@`,
asyncpg at the first. A value is therefore parsed once here, the last-`@` way, and rebuilt
with its user name and password percent-encoded, so every driver reads the same password.
What cannot be parsed unambiguously (a raw `#`, `?` or `/` in a password cuts the address
short) is refused. Error messages never contain the value or any part of it: they are
shown to operators and written to logs, and the value is a secret.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import SecretStr

from stream_indexer.errors import AddressError
from stream_indexer.masking import secret_forms

ENCODE_HINT = "percent-encode '@', ':', '/', '?', '#' and '%' in the user name and password"
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+(?:%[^\]]+)?\](?::(?P<port>[^:]*))?")


def checked_dsn(value: SecretStr | None) -> SecretStr | None:
    """Settings validator for a DSN: normalised, or a ValueError that does not quote it."""
    if value is None:
        return None
    try:
        return SecretStr(normalize_dsn(value.get_secret_value()))
    except AddressError as exc:
        raise ValueError(f"not a usable Postgres DSN (value not shown): {exc}") from None


def checked_hosts(hosts: list[str]) -> list[str]:
    """Settings validator for OpenSearch hosts: a bad one is named by position only."""
    if not hosts:
        raise ValueError("at least one host is required")
    checked = []
    for number, host in enumerate(hosts, start=1):
        try:
            checked.append(normalize_host(host))
        except AddressError as exc:
            raise ValueError(f"host {number} of {len(hosts)} (value not shown) {exc}") from None
    return checked


def normalize_dsn(value: str) -> str:
    """A `postgresql://` DSN asyncpg reads exactly as urllib does, or `AddressError`."""
    parts = _split(value, ("postgresql", "postgres"), "a postgresql:// or postgres:// URL")
    if parts.query:
        try:
            query = parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            raise AddressError(f"its query part cannot be parsed ({ENCODE_HINT})") from None
        for port in query.get("port", []):
            if not all(_valid_port(p) for p in port.split(",")):
                raise AddressError("its port= parameter is not a port number")
    hostspec = parts.netloc.rpartition("@")[2]
    if hostspec:
        for number, host in enumerate(hostspec.split(","), start=1):
            _check_host_port(host, f"host {number} of the host list")
    return _rebuild(value, parts.scheme, parts.netloc)


def normalize_host(value: str) -> str:
    """An `http(s)://` OpenSearch URL with percent-encoded user info, or `AddressError`."""
    parts = _split(value, ("http", "https"), "an http:// or https:// URL")
    if parts.query:
        raise AddressError(f"it has a query part ('?'; {ENCODE_HINT})")
    hostspec = parts.netloc.rpartition("@")[2]
    if not hostspec:
        raise AddressError("it has no host name")
    _check_host_port(hostspec, "the host")
    return _rebuild(value, parts.scheme, parts.netloc).rstrip("/")


def address_secrets(value: str) -> set[str]:
    """The password of an address in every form it may be quoted in, and the address itself."""
    netloc = urlsplit(value).netloc if "://" in value else ""
    userinfo, at, _ = netloc.rpartition("@")
    found = {value}
    password = userinfo.partition(":")[2] if at else ""
    if password:
        found |= secret_forms(password)
    found |= {password for key, password in _query_passwords(value)}
    return {text for text in found if text}


def _split(value: str, schemes: tuple[str, ...], what: str) -> _Parts:
    if not any(value.lower().startswith(f"{scheme}://") for scheme in schemes):
        raise AddressError(f"must be {what}")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced '[' in the host part
        raise AddressError(f"cannot be parsed as a URL ({ENCODE_HINT})") from None
    if parts.fragment or value.endswith("#"):
        raise AddressError(f"it has a raw '#' ({ENCODE_HINT}: '#' as %23)")
    if "@" in parts.path or "@" in parts.query:
        raise AddressError(f"an '@' follows the host part ({ENCODE_HINT})")
    return _Parts(parts.scheme, parts.netloc, parts.query)


class _Parts:
    def __init__(self, scheme: str, netloc: str, query: str) -> None:
        self.scheme, self.netloc, self.query = scheme, netloc, query


def _check_host_port(host: str, which: str) -> None:
    if not host:
        raise AddressError(f"{which} is empty")
    if host.startswith("/"):  # a unix socket directory
        return
    if host.startswith("["):
        match = _IPV6.fullmatch(host)
        if match is None:
            raise AddressError(f"{which} is not a valid [IPv6] address")
        port = match.group("port")
    else:
        _, colon, port = host.partition(":")
        if not colon:
            port = None
    if port is not None and not _valid_port(port):
        raise AddressError(f"the port of {which} is not a number from 1 to 65535 ({ENCODE_HINT})")


def _valid_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) <= 65535


def _rebuild(value: str, scheme: str, netloc: str) -> str:
    """`value` with the user name and password of its user info percent-encoded once."""
    userinfo, at, hostspec = netloc.rpartition("@")
    if not at:
        return value
    user, colon, password = userinfo.partition(":")
    encoded = quote(unquote(user), safe="") + (colon and ":" + quote(unquote(password), safe=""))
    tail = value[len(scheme) + 3 + len(netloc) :]
    return f"{value[: len(scheme)]}://{encoded}@{hostspec}{tail}"


def _query_passwords(value: str) -> list[tuple[str, str]]:
    query = value.partition("?")[2].partition("#")[0]
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        key, _, text = part.partition("=")
        if re.search(r"(?i)password|passwd|secret|token", key) and text:
            pairs.extend((key, form) for form in secret_forms(text))
    return pairs


__all__ = [
    "AddressError",
    "address_secrets",
    "checked_dsn",
    "checked_hosts",
    "normalize_dsn",
    "normalize_host",
]
