"""Collect every bad field of a request, then fail once with all of them.

A client fixing a form wants the whole list, not one error per round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from shared.errors import FieldViolation, InvalidArgument

E = TypeVar("E")
K = TypeVar("K", bound=int)  # a protobuf enum value


class Violations:
    """Accumulates field violations; ``raise_if_any`` raises one ``InvalidArgument``."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "") -> None:
        self._items.append(FieldViolation(field, description, reason))

    def check(self, ok: bool, field: str, description: str, reason: str = "") -> bool:
        """Record a violation unless ``ok``; returns ``ok`` so callers can skip dependents."""
        if not ok:
            self.add(field, description, reason)
        return ok

    def require(self, value: object, field: str) -> bool:
        """The field must be present (non-empty string, non-zero number, set message)."""
        return self.check(bool(value), field, "is required", "REQUIRED")

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def items(self) -> list[FieldViolation]:
        return list(self._items)

    def raise_if_any(self, reason: str | None = None) -> None:
        if not self._items:
            return
        first = self._items[0]
        summary = f"{first.field}: {first.description}"
        if len(self._items) > 1:
            summary += f" (and {len(self._items) - 1} more)"
        raise InvalidArgument(summary, violations=self._items, reason=reason)


def check_update_mask(
    paths: Sequence[str],
    violations: Violations,
    *,
    allowed: frozenset[str],
    immutable: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """AIP-134 mask paths: non-empty, each one updatable; every problem goes to ``violations``."""
    if not paths:
        violations.add("update_mask", "must name at least one field", "INVALID_UPDATE_MASK")
    for index, path in enumerate(paths):
        field = f"update_mask.paths[{index}]"
        if path in immutable:
            violations.add(field, f"{path} cannot be changed", "FIELD_IMMUTABLE")
        elif path not in allowed:
            violations.add(
                field,
                f"unknown field {path!r}; allowed: {', '.join(sorted(allowed))}",
                "INVALID_UPDATE_MASK",
            )
    return frozenset(paths)


def enum_filter(
    values: Iterable[K], known: Mapping[K, E], violations: Violations, field: str
) -> frozenset[E]:
    """A repeated-enum list filter: unset entries mean "no filter", unknown ones are bad."""
    chosen: set[E] = set()
    for index, value in enumerate(values):
        if value in known:
            chosen.add(known[value])
        elif value:
            violations.add(f"{field}[{index}]", f"{value} is not a known value", "INVALID_ENUM")
    return frozenset(chosen)
