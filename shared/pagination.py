"""AIP-158 pagination: ``page_size`` with a default and a maximum, opaque page tokens.

A token encodes the sort key of the last row returned (keyset pagination: stable under
concurrent inserts, no OFFSET scans) plus a hash of the request's filters, so a token
reused with other filters is refused instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(
    requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """0 means the default; larger than the maximum is clamped (AIP-158); negative is bad."""
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative", "OUT_OF_RANGE")
    return min(requested or default, maximum)


@dataclass(frozen=True)
class PageToken:
    """The position after which the next page starts."""

    after: list[Any]


def _filter_hash(filters: object) -> str:
    blob = json.dumps(filters, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def encode_token(after: list[Any], filters: object) -> str:
    payload = json.dumps({"a": after, "f": _filter_hash(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, filters: object) -> PageToken | None:
    """None for the first page; InvalidArgument for garbage or a token from other filters."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = payload["a"]
        matches = payload["f"] == _filter_hash(filters)
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.for_field(
            "page_token", "is not a token this service issued", "INVALID_PAGE_TOKEN"
        ) from None
    if not matches or not isinstance(after, list):
        raise InvalidArgument.for_field(
            "page_token",
            "belongs to a request with different filters; start again without a token",
            "INVALID_PAGE_TOKEN",
        )
    return PageToken(after=after)


def time_and_id(token: PageToken | None) -> tuple[dt.datetime, str] | None:
    """The (created_at, id) position of a list ordered by creation; None for page one."""
    if token is None:
        return None
    try:
        created_at, item_id = token.after
        return dt.datetime.fromisoformat(created_at), str(item_id)
    except (TypeError, ValueError):
        raise InvalidArgument.for_field(
            "page_token", "is not a token this service issued", "INVALID_PAGE_TOKEN"
        ) from None


def time_and_id_token(created_at: dt.datetime, item_id: str, filters: object) -> str:
    return encode_token([created_at.isoformat(), item_id], filters)
