"""uvicorn inside the worker's own event loop, leaving signals to the worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The worker owns SIGTERM/SIGINT and stops the sidecar itself, after the consumer.
        yield


def embedded_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    return _EmbeddedServer(config)


async def serve(server: uvicorn.Server) -> None:
    """Serve until cancelled; then shut down as uvicorn does (stop listening, finish what is in
    flight within its own short wait) before the cancellation goes on."""
    serving = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
