"""A service whose issue is not built yet: a real server (health, reflection, auth,
migrations) whose RPCs all answer UNIMPLEMENTED through the generated base class."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.db import new_metadata
from shared.service import Mounted, Runtime, ServiceSpec
from shared.settings import ServiceSettings


def placeholder_spec(
    *,
    name: str,
    full_name: str,
    settings_cls: type[ServiceSettings],
    servicer_cls: Callable[[], Any],
    add_to_server: Callable[[Any, Any], None],
    scopes: Mapping[str, frozenset[str]],
    package_dir: Path,
) -> ServiceSpec:
    async def mount(runtime: Runtime) -> Mounted:
        return Mounted(servicer=servicer_cls(), add_to_server=add_to_server, scopes=scopes)

    return ServiceSpec(
        name=name,
        full_name=full_name,
        settings_cls=settings_cls,
        metadata=new_metadata(),
        migrations_dir=package_dir / "storage" / "migrations",
        mount=mount,
    )
