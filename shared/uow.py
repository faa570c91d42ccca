"""Unit of work: one database transaction per RPC, committed only when asked.

Repositories receive the unit's session and never commit; the application function
calls ``commit()`` once its change is complete. Leaving the block without committing
rolls everything back, so an exception can never leave half a change behind.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


class UnitOfWork:
    """Subclasses add their repositories in ``_open`` (e.g. ``self.programs = ...``)."""

    session: AsyncSession

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._committed = False

    def _open(self) -> None:
        """Hook: build repositories on ``self.session``."""

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self._committed = False
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        self._committed = True

    async def rollback(self) -> None:
        await self.session.rollback()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: results are mapped to responses after commit.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
