"""Channels for calls between services (and for the Python client of the suite).

* ``dns:///host:port`` targets with client-side ``round_robin``: with a headless
  Kubernetes Service the client sees every pod, so load spreads without a proxy;
* a default deadline and retries *only* on UNAVAILABLE, both through the standard gRPC
  service config (the retry happens only when the server never saw the call, or the
  method is idempotent by request_id — every mutating RPC here is);
* the caller's API key on every call; OpenTelemetry context propagated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from grpc import aio

from shared import telemetry


def service_config(timeout_seconds: float, max_attempts: int = 4) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{}],  # every method of every service on the channel
                    "timeout": f"{timeout_seconds:.3f}s",
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


class _ApiKeyInterceptor(
    aio.UnaryUnaryClientInterceptor,
    aio.UnaryStreamClientInterceptor,
    aio.StreamUnaryClientInterceptor,
    aio.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <key>`` unless the caller set its own."""

    def __init__(self, api_key: str) -> None:
        self._header = ("authorization", f"Bearer {api_key}")

    def _with_key(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        if not metadata.get_all("authorization"):
            metadata.add(*self._header)
        return aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_key(details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_key(details), request)

    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._with_key(details), request_iterator)

    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._with_key(details), request_iterator)


def create_channel(
    target: str,
    *,
    api_key: str | None,
    timeout_seconds: float = 5.0,
    interceptors: Sequence[aio.ClientInterceptor] = (),
) -> aio.Channel:
    """An insecure (in-cluster / mesh-encrypted) channel with the suite's call policy."""
    chain: list[aio.ClientInterceptor] = list(telemetry.client_interceptors())
    if api_key:
        chain.append(_ApiKeyInterceptor(api_key))
    chain.extend(interceptors)
    options = [
        ("grpc.service_config", service_config(timeout_seconds)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    return aio.insecure_channel(target, options=options, interceptors=chain)
