"""The points unit of work: one transaction, its repositories."""

from __future__ import annotations

from services.points.storage.repositories import SqlProgramRepository
from shared.uow import UnitOfWork


class SqlPointsUnitOfWork(UnitOfWork):
    programs: SqlProgramRepository

    def _open(self) -> None:
        self.programs = SqlProgramRepository(self.session)
