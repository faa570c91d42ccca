"""Injected id generation: readable, prefixed, time-ordered ids (``prg_0193c4...``).

Time-ordered ids keep B-tree inserts local and make ids sort by creation; the random
tail (80 bits) makes them unguessable and collision-free across replicas.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Protocol


class IdGenerator(Protocol):
    def new_id(self, prefix: str) -> str:
        """A new unique id such as ``prg_018f3a...``."""
        ...


class TimeOrderedIds:
    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class SequentialIds:
    """Predictable ids for tests: ``prg_000001``, ``prg_000002`` …"""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._counter):06d}"
