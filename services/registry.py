"""The four services by name. Imports are lazy so `loyalty serve tiers` loads only tiers."""

from __future__ import annotations

import importlib

from shared.service import ServiceSpec

# Start order for `loyalty up`: callees before callers (gateway → points → promotions → tiers).
SERVICE_NAMES = ("tiers", "promotions", "points", "gateway")


def get_spec(name: str) -> ServiceSpec:
    if name not in SERVICE_NAMES:
        raise KeyError(f"unknown service {name!r}; expected one of {', '.join(SERVICE_NAMES)}")
    spec: ServiceSpec = importlib.import_module(f"services.{name}.app").SPEC
    return spec
