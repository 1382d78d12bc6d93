"""What the provider test servers share: a thread of their own, recording, injected faults.

A `ProviderServer` is a `ThreadingHTTPServer` on 127.0.0.1 (a free port) run by a daemon
thread, independent of any asyncio loop, so a worker in this process or in a subprocess can
call it. A subclass answers requests in `handle`; before that, every request is recorded and
the test's faults are applied, in this order:

1. `hang()`: the request is accepted and not answered until `release()` (it then goes on as
   if it had just arrived) or `close()` (its connection is dropped unanswered).
2. `fail_next(...)`: the request is answered with the canned reply; `handle` never sees it.
3. `hold_after_handling()` (named for each provider): `handle` runs, so the provider has done
   the work, then the answer waits until the test releases it. This is where a test kills
   the worker between the provider's call and the worker's commit.

Nothing waits forever on close: waiting handlers are woken and drop their connection, the
handler threads are daemons and the server does not join them.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.providers.recorded import Headers, Recorded, RecordedRequests


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


class Hold:
    """One request held after the provider did its work.

    `forwarded` is set once it has (stripe-mock answered the proxy, or RazorpayServer applied
    the request to its state); `request` is then the held request. `release()` lets its answer
    go out. Waiting on the handle (`hold.wait(timeout)`) waits for `forwarded`.
    """

    def __init__(self, changed: threading.Condition) -> None:
        self.forwarded = threading.Event()
        self.request: Recorded | None = None
        self._changed = changed
        self._released = False

    def wait(self, timeout: float | None = None) -> bool:
        return self.forwarded.wait(timeout)

    def is_set(self) -> bool:
        return self.forwarded.is_set()

    def release(self) -> None:
        with self._changed:
            self._released = True
            self._changed.notify_all()


class ProviderServer:
    """Subclasses implement `handle`; use as `with Server(...) as server: server.base_url`."""

    def __init__(self) -> None:
        self.requests = RecordedRequests()
        self.errors: list[BaseException] = []  # exceptions raised by `handle` (answered 500)
        self._changed = threading.Condition()
        self._failures: deque[Reply] = deque()
        self._hanging: int | None = 0  # requests still to hang; None: all until unhang()
        self._releases = 0  # release() calls so far: a hung request waits for the next one
        self._holds: deque[Hold] = deque()
        self._held: list[Hold] = []
        self._closed = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops serving; hung and held requests are dropped unanswered."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults the test injects ------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests are answered `status` with the JSON `body` and `headers`
        (after those queued before); the provider never sees them."""
        reply = Reply.json(status, body, headers)
        with self._changed:
            self._failures.extend([reply] * times)

    def hang(self, times: int | None = None) -> None:
        """The next `times` requests (all, when None, until `unhang()`) are accepted and not
        answered until `release()` or `close()`."""
        with self._changed:
            self._hanging = times

    def unhang(self) -> None:
        """Requests from now on are answered; those already hanging wait for `release()`."""
        with self._changed:
            self._hanging = 0

    def release(self) -> None:
        """Every hung request goes on as if it had just arrived, and every held one answers."""
        with self._changed:
            self._releases += 1
            for hold in self._held:
                hold._released = True
            self._changed.notify_all()

    def _hold_next(self) -> Hold:
        hold = Hold(self._changed)
        with self._changed:
            self._holds.append(hold)
        return hold

    # -- serving ----------------------------------------------------------------------------

    def _serve(self, request: Recorded) -> Reply | None:
        """The reply to send, or None to drop the connection (the server is closing)."""
        self.requests.append(request)
        with self._changed:
            if self._hanging is None or self._hanging > 0:
                if self._hanging is not None:
                    self._hanging -= 1
                releases = self._releases
                self._changed.wait_for(lambda: self._closed or self._releases != releases)
            if self._closed:
                return None
            if self._failures:
                return self._failures.popleft()
            hold = self._holds.popleft() if self._holds else None
            if hold is not None:
                self._held.append(hold)
        try:
            reply = self.handle(request)
        except Exception as e:  # noqa: BLE001 - a bug in the stand-in: answered, kept in errors
            self.errors.append(e)
            reply = Reply.json(500, {"error": {"message": f"{type(e).__name__}: {e}"}})
        if hold is not None:
            hold.request = request
            hold.forwarded.set()
            with self._changed:
                self._changed.wait_for(lambda: self._closed or hold._released)
                self._held.remove(hold)
                if self._closed:
                    return None
        return reply


def _handler_for(server: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request a connection, so no idle keep-alive thread outlives a test.
        timeout = 30  # a client that connects and sends nothing does not keep a thread for ever

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            request = Recorded(
                method=self.command,
                target=self.path,
                path=url.path,
                query=parse_qs(url.query, keep_blank_values=True),
                headers=Headers(self.headers.items()),
                body=self._body(),
            )
            reply = server._serve(request)
            if reply is None:
                self.close_connection = True
                return
            try:
                self.send_response_only(reply.status)
                names = {name.lower() for name in reply.headers}
                if "date" not in names:
                    self.send_header("Date", self.date_time_string())
                for name, value in reply.headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (or was killed) while the request was held

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the recording is the log

    return Handler
