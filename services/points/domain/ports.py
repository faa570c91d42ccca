"""What the points domain needs from storage, as protocols (storage implements them)."""

from __future__ import annotations

from typing import Protocol

from services.points.domain.program import Program


class ProgramRepository(Protocol):
    async def add(self, program: Program) -> None: ...

    async def get(self, program_id: str) -> Program | None: ...

    async def update(self, program: Program) -> None: ...

    async def list_after(self, after_id: str | None, limit: int) -> list[Program]:
        """Programs ordered by id, strictly after ``after_id``; at most ``limit``."""
        ...


class PointsUnitOfWork(Protocol):
    @property
    def programs(self) -> ProgramRepository: ...

    async def commit(self) -> None: ...
