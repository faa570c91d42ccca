"""Conversions between protobuf well-known types and Python values, used by every api layer."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)
