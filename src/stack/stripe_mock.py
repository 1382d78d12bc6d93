"""stripe-mock, Stripe's API simulator, built once with `go install` into the cache and run on
an HTTP and an HTTPS port."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stack.process import (
    Daemon,
    StackError,
    command_line,
    nothing_to_start,
    remove_leftovers,
    remove_tree,
    run_logged,
    say,
    show_log_tail,
    tcp_open,
)
from stack.settings import Settings

MODULE = "github.com/stripe/stripe-mock"
START_TIMEOUT = 30
STOP_TIMEOUT = 10
PROBE_SECONDS = 3
# Any test key is accepted; the Stripe-Mock-Version header tells stripe-mock apart from some
# other HTTP server on the port.
PROBE_REQUEST = (
    b"GET /v1/charges?limit=1 HTTP/1.0\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Authorization: Bearer sk_test_123\r\n\r\n"
)


def server_answers(port: int) -> bool:
    """Whether stripe-mock answers a real API call on 127.0.0.1:port within a few seconds."""
    deadline = time.monotonic() + PROBE_SECONDS
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_SECONDS) as conn:
            conn.sendall(PROBE_REQUEST)
            lines = _response_lines(conn, deadline)
            status = next(lines, None)
            if status is None or not re.match(rb"HTTP/1\.. 200 ", status, re.DOTALL):
                return False
            for line in lines:
                header = re.sub(rb"[\x00-\x1f\x7f]\Z", b"", line)  # the \r of \r\n
                if not header:  # end of headers
                    return False
                if header.lower().startswith(b"stripe-mock-version:"):
                    return True
    except OSError:
        return False
    return False


def _response_lines(conn: socket.socket, deadline: float) -> Iterator[bytes]:
    """Complete lines as they arrive; a last line without its newline is dropped."""
    buffered = b""
    while True:
        while b"\n" not in buffered:
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = conn.recv(4096)
            if not chunk:
                return
            buffered += chunk
        line, _, buffered = buffered.partition(b"\n")
        yield line


@dataclass(frozen=True)
class StripeMock:
    settings: Settings
    answers: Callable[[int], bool] = field(default=server_answers)
    tcp_open: Callable[[int], bool] = field(default=tcp_open)

    @property
    def link(self) -> Path:
        """The per-stack link it is started through, so that its command line names this stack
        (the binary itself is shared by every stack using the cache)."""
        return self.settings.stripe_mock_dir / "stripe-mock"

    @property
    def daemon(self) -> Daemon:
        state = self.settings.stripe_mock_dir
        return Daemon(
            name="stripe-mock",
            pid_file=state / "stripe-mock.pid",
            needle=f"{self.link} -http-addr",
            log=state / "stripe-mock.log",
            start_timeout=START_TIMEOUT,
            stop_timeout=STOP_TIMEOUT,
            poll_seconds=0.25,
            exited_message="exited during startup",
        )

    def elsewhere(self) -> bool:
        if self.settings.stripe_elsewhere is None:
            return False
        say(
            f"stripe-mock: STRIPE_API_BASE points elsewhere ({self.settings.stripe_elsewhere}); "
            "not managed"
        )
        return True

    def up(self) -> None:
        if self.elsewhere():
            return
        port = self.settings.stripe_mock_port
        if nothing_to_start(
            self.daemon, port, self.answers, self.tcp_open,
            check_port=self._check_port, wait_ready=self._wait_ready, serves_as="stripe-mock",
        ):  # fmt: skip
            return
        https_port = self.settings.stripe_mock_https_port
        if self.tcp_open(https_port):
            raise StackError(
                f"stripe-mock: HTTPS port 127.0.0.1:{https_port} is already in use "
                "(set STRIPE_MOCK_HTTPS_PORT)"
            )
        self._ensure_binary()
        say(f"stripe-mock: starting on 127.0.0.1:{port} (log: {self.daemon.log})...")
        self.settings.stripe_mock_dir.mkdir(parents=True, exist_ok=True)
        _point_link(self.link, self.settings.stripe_mock_bin)
        pid = self.daemon.start(
            [
                str(self.link),
                "-http-addr",
                f"127.0.0.1:{port}",
                "-https-addr",
                f"127.0.0.1:{https_port}",
            ]
        )
        self._wait_ready(pid)

    def down(self) -> None:
        if not self.elsewhere():
            self.daemon.down()

    def status(self) -> None:
        if self.elsewhere():
            return
        wanted = self.settings.stripe_mock_port
        pid = self.daemon.pid()
        if pid is None:
            if self.answers(wanted):
                say(f"stripe-mock: listening on 127.0.0.1:{wanted}, not started by this script")
            else:
                say(f"stripe-mock: not listening on 127.0.0.1:{wanted}")
            return
        port = _http_port(pid) or wanted
        note = "" if port == wanted else f" (but STRIPE_MOCK_PORT is {wanted})"
        if self.answers(port):
            state = self.settings.stripe_mock_dir
            say(f"stripe-mock: listening on 127.0.0.1:{port}, pid {pid}, state {state}{note}")
        else:
            say(
                f"stripe-mock: not answering on 127.0.0.1:{port} yet, pid {pid} alive "
                f"(starting?){note}"
            )

    def _check_port(self, pid: int) -> None:
        """As for Kafka: a server of this stack on another port than asked is refused."""
        port = _http_port(pid)
        if port is not None and port != self.settings.stripe_mock_port:
            raise StackError(
                f"stripe-mock: this stack's server (pid {pid}) runs on 127.0.0.1:{port}, not "
                f"STRIPE_MOCK_PORT={self.settings.stripe_mock_port}; run 'down stripe-mock' "
                "with the old port first"
            )

    def _wait_ready(self, pid: int) -> None:
        port, https_port = self.settings.stripe_mock_port, self.settings.stripe_mock_https_port
        seconds = self.daemon.wait_ready(pid, port, self.answers)
        say(
            f"stripe-mock: listening on 127.0.0.1:{port}, https 127.0.0.1:{https_port} "
            f"(pid {pid}, ready in {seconds}s)"
        )

    def _ensure_binary(self) -> None:
        """Builds the pinned stripe-mock into the cache unless it is there. go install writes
        into a temp dir that is renamed into place, so an interrupted build leaves no
        half-written binary and is simply redone next time."""
        binary, version = self.settings.stripe_mock_bin, self.settings.stripe_mock_version
        if os.access(binary, os.X_OK):
            return
        if shutil.which("go") is None:
            raise StackError("stripe-mock: go not found; install Go 1.22+ (https://go.dev/dl/)")
        say(f"stripe-mock: building {version} with go install (first time only)...")
        start = time.monotonic()
        cache = self.settings.stack_cache
        cache.mkdir(parents=True, exist_ok=True)
        remove_leftovers(cache, f".stripe-mock-{version}.")  # of an interrupted run
        log_path = cache / f"stripe-mock-{version}-build.log"
        with tempfile.TemporaryDirectory(prefix=f".stripe-mock-{version}.", dir=cache) as tmp:
            built = Path(tmp) / "bin"
            # GOFLAGS replaces any inherited value (-mod=vendor would break an
            # install@version); -X sets the version it reports, as its releases do.
            go_env = {**os.environ, "GOBIN": str(built), "GOFLAGS": "-mod=mod"}
            install = ["go", "install", "-ldflags", f"-X main.version={version}"]
            with log_path.open("wb") as log:
                ok = run_logged([*install, f"{MODULE}@{version}"], log, cwd=tmp, env=go_env)
            if not ok:
                show_log_tail(log_path)
                raise StackError(
                    f"stripe-mock: go install {MODULE}@{version} failed (log: {log_path})"
                )
            if not os.access(built / "stripe-mock", os.X_OK):
                raise StackError(
                    f"stripe-mock: go install left no binary in {built} (log: {log_path})"
                )
            remove_tree(binary.parent)  # a bin dir without the binary is debris
            binary.parent.parent.mkdir(parents=True, exist_ok=True)
            built.rename(binary.parent)
        say(f"stripe-mock: built {binary} in {int(time.monotonic() - start)}s")


def _http_port(pid: int) -> int | None:
    """The HTTP port our running stripe-mock was started with (from its command line); the
    knobs may have changed."""
    args = command_line(pid)
    for flag, value in itertools.pairwise(args):
        if flag == "-http-addr":
            port = value.rpartition(":")[2]
            return int(port) if port.isdigit() else None
    return None


def _point_link(link: Path, target: Path) -> None:
    """Like ln -sfn: the link now points at target, whatever it pointed at before."""
    fresh = link.with_name(link.name + ".new")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(target)
    fresh.replace(link)
