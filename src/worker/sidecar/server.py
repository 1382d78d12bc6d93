"""uvicorn inside the worker's own event loop, leaving signals to the worker."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The worker owns SIGTERM/SIGINT and stops the sidecar itself, after the consumer.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn ends the process (sys.exit) when it cannot listen, past every cleanup; an
        # error instead stops the worker the usual way: closed in order, exit 1, saying why.
        try:
            await super().startup(sockets)
        except SystemExit:
            where = f"{self.config.host}:{self.config.port}"
            raise OSError(f"the sidecar cannot listen on {where} (see the error above)") from None


def embedded_server(
    app: FastAPI, host: str, port: int, *, shutdown_seconds: float = 5.0
) -> uvicorn.Server:
    """uvicorn for `app`; a stop waits at most `shutdown_seconds` (whole seconds, at least one)
    for requests in flight."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, math.ceil(shutdown_seconds)),
    )
    return _EmbeddedServer(config)


async def serve(server: uvicorn.Server) -> None:
    """Serve until cancelled; then shut down as uvicorn does (stop listening, let requests in
    flight finish for at most its `timeout_graceful_shutdown`) before the cancellation goes
    on."""
    serving = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
