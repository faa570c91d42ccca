"""The one server interceptor every service runs behind.

Per RPC, in this order: overload cap (RESOURCE_EXHAUSTED ``OVERLOADED``) → authentication
and scope check (UNAUTHENTICATED / PERMISSION_DENIED) → the handler, with the caller's
``Principal`` in a context variable → domain errors mapped to rich statuses, anything
unexpected to INTERNAL with only the trace id → metrics. Doing all of it in one wrapper
keeps the per-call overhead to one extra Python frame.

Health and reflection are exempt: probes must answer even when the server is saturated,
and they carry no data worth a key.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias

import grpc
from grpc import aio

from shared import auth
from shared.errors import DomainError, ResourceExhausted
from shared.grpc.status import rich_status, status_for, trailing_metadata
from shared.telemetry import current_trace_id

log = logging.getLogger("loyalty.rpc")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the type stubs

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class RpcObserver(Protocol):
    def observe(self, method: str, code: str, seconds: float) -> None: ...

    def rejected(self, reason: str) -> None: ...

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class PolicyInterceptor(aio.ServerInterceptor):
    def __init__(
        self,
        *,
        domain: str,
        authenticator: auth.Authenticator,
        scopes: Mapping[str, frozenset[str]],
        max_concurrent_rpcs: int,
        observer: RpcObserver,
    ) -> None:
        self._domain = domain
        self._authenticator = authenticator
        self._scopes = dict(scopes)
        self._max = max_concurrent_rpcs
        self._observer = observer
        self._in_flight = 0
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    # -- per-call policy ---------------------------------------------------------------

    def _admit(self, method: str, context: aio.ServicerContext[Any, Any]) -> auth.Principal:
        """Raise unless the call may run now; returns who is calling."""
        if self._in_flight >= self._max:
            self._observer.rejected("overloaded")
            raise ResourceExhausted(
                "The service is busy; retry shortly.",
                reason="OVERLOADED",
                retry_after_seconds=0.5,
            )
        return self._caller(method, context)

    def _caller(self, method: str, context: aio.ServicerContext[Any, Any]) -> auth.Principal:
        """Who is calling, if the key is valid and holds a scope ``method`` accepts."""
        principal = self._authenticator.authenticate(context.invocation_metadata())
        self._authenticator.authorize(principal, self._scopes.get(method, auth.ADMIN))
        return principal

    async def _fail(
        self, context: aio.ServicerContext[Any, Any], method: str, exc: BaseException
    ) -> str:
        """Abort the call for ``exc`` (never returns normally); gives the code's name."""
        if isinstance(exc, DomainError):
            code, status = status_for(exc, self._domain)
            await context.abort(code, status.message, trailing_metadata(status))
        if isinstance(exc, NotImplementedError):
            code = grpc.StatusCode.UNIMPLEMENTED
            message = f"{method.rsplit('/', 1)[-1]} is not implemented yet."
            status = rich_status(code, message, reason="NOT_IMPLEMENTED", domain=self._domain)
            await context.abort(code, message, trailing_metadata(status))
        trace_id = current_trace_id() or "none"
        log.error("unhandled error in %s", method, exc_info=exc, extra={"grpc_method": method})
        code = grpc.StatusCode.INTERNAL
        message = f"Internal error. Quote trace id {trace_id} to support."
        status = rich_status(
            code, message, reason="INTERNAL", domain=self._domain, metadata={"trace_id": trace_id}
        )
        await context.abort(code, message, trailing_metadata(status))
        raise AssertionError("unreachable")  # pragma: no cover - abort always raises

    def _code_of(self, exc: BaseException, context: aio.ServicerContext[Any, Any]) -> str:
        if isinstance(exc, DomainError):
            return exc.kind.value
        if isinstance(exc, NotImplementedError):
            return "UNIMPLEMENTED"
        code = context.code()
        if isinstance(exc, aio.AbortError) and isinstance(code, grpc.StatusCode):
            return code.name
        if isinstance(exc, BaseException) and type(exc).__name__ == "CancelledError":
            return "CANCELLED"
        return "INTERNAL"

    def _wrap(self, method: str, handler: Handler) -> Handler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_single(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_single(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap_single(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """Unary and client-streaming calls: bounded work, counted against the cap."""

        async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            admitted = False
            try:
                principal = self._admit(method, context)
                admitted = True
                self._in_flight += 1
                self._observer.inc()
                with auth.use_principal(principal):
                    result = behavior(request, context)
                    return await result if inspect.isawaitable(result) else result
            except BaseException as exc:
                code = self._code_of(exc, context)
                if isinstance(exc, Exception) and not isinstance(exc, aio.AbortError):
                    await self._fail(context, method, exc)
                raise
            finally:
                if admitted:
                    self._in_flight -= 1
                    self._observer.dec()
                self._observer.observe(method, code, time.perf_counter() - started)

        return call

    def _wrap_stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """Server-streaming calls (event feeds) may live for hours: not counted in the cap."""

        async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = "OK"
            try:
                with auth.use_principal(self._caller(method, context)):
                    result = behavior(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
            except BaseException as exc:
                code = self._code_of(exc, context)
                if isinstance(exc, Exception) and not isinstance(exc, aio.AbortError):
                    await self._fail(context, method, exc)
                raise
            finally:
                self._observer.observe(method, code, time.perf_counter() - started)

        return call
