"""Processes and ports: what the services share to start, find, wait for and stop a server."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class StackError(Exception):
    """A failure the command reports in one line (after any log lines) and exits 1 on."""


def say(message: str) -> None:
    print(message, flush=True)


def show_lines(lines: Sequence[str]) -> None:
    """Log lines on stderr, indented so the one-line error that follows stays easy to spot."""
    for line in lines:
        print("  | " + ANSI_COLOUR.sub("", line), file=sys.stderr)
    sys.stderr.flush()


def show_log_tail(path: Path, lines: int = 20) -> None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    print(f"  --- last lines of {path} ---", file=sys.stderr)
    show_lines(text.splitlines()[-lines:])


def show_output(output: str) -> None:
    """A command's captured output on stderr, as the bash script printed it."""
    print(f"  | {output}", file=sys.stderr, flush=True)


def remove_tree(path: Path) -> None:
    """Like rm -rf: a directory with its contents, a file or a link, or nothing."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(directory: Path, prefix: str) -> None:
    """Temp dirs of an interrupted run, named prefix + random."""
    for path in directory.glob(glob.escape(prefix) + "*"):
        remove_tree(path)


def tcp_open(port: int) -> bool:
    """Whether anything accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def read_pid_file(path: Path) -> str | None:
    try:
        return path.read_text().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def pid_matches(pid: str, needle: str) -> bool:
    """True when /proc says pid is alive and its command line contains needle; guards against
    killing a recycled pid or the other stack's process."""
    if not re.fullmatch(r"[0-9]+", pid):
        return False
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return os.fsencode(needle) in command_line.replace(b"\0", b" ")


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(arg) for arg in raw.split(b"\0")]


def alive(pid: int) -> bool:
    """Whether pid can still be signalled. A server this command started and that has exited
    is reaped first: as a zombie it would still look alive."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child, or already reaped
        reaped = 0
    if reaped:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def spawn_detached(argv: Sequence[str], log: Path) -> int:
    """Starts a server that outlives this command and its terminal, as a shell's
    `setsid nohup server </dev/null >>log 2>&1 &` did: its own session, SIGHUP and SIGINT
    ignored, no stdin, output appended to log. Files this command opened (the stack lock) are
    close-on-exec, so the server does not hold them."""
    with log.open("ab") as out, _ignoring(signal.SIGHUP, signal.SIGINT):
        server = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return server.pid


@contextlib.contextmanager
def _ignoring(*signums: signal.Signals) -> Iterator[None]:
    """Signals ignored meanwhile; a child started meanwhile inherits that."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def run_output(
    argv: Sequence[str], *, cwd: str | Path | None = None, stdin_text: str | None = None
) -> tuple[bool, str]:
    """Runs a command with its stdout and stderr captured together: (succeeded, output)."""
    done = subprocess.run(
        argv,
        check=False,
        cwd=cwd,
        input=stdin_text,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return done.returncode == 0, done.stdout.rstrip("\n")


def run_logged(
    argv: Sequence[str],
    log: IO[bytes],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Runs a command with its stdout and stderr going to log; whether it succeeded."""
    log.flush()
    done = subprocess.run(argv, check=False, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return done.returncode == 0


def run_stdout(argv: Sequence[str], errors: IO[bytes]) -> str | None:
    """Runs a command for what it prints, its stderr going to errors; None if it failed."""
    errors.flush()
    done = subprocess.run(argv, check=False, text=True, stdout=subprocess.PIPE, stderr=errors)
    return done.stdout.rstrip("\n") if done.returncode == 0 else None


def exit_code(argv: Sequence[str], *, cwd: str | Path | None = None) -> int:
    """Runs a command whose answer is its exit code; its output is not wanted."""
    done = subprocess.run(
        argv, check=False, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return done.returncode


@dataclass(frozen=True)
class Daemon:
    """A server this stack starts itself and knows by its pid file and command line."""

    name: str  # as in messages: "kafka", "stripe-mock"
    pid_file: Path
    needle: str  # in the command line of our server, and of no other stack's
    log: Path
    start_timeout: int
    stop_timeout: int
    poll_seconds: float
    exited_message: str

    def pid(self) -> int | None:
        """Our server's pid, if it is running."""
        pid = read_pid_file(self.pid_file)
        if pid is None or not pid_matches(pid, self.needle):
            return None
        return int(pid)

    def start(self, argv: Sequence[str]) -> int:
        pid = spawn_detached(argv, self.log)
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def wait_ready(self, pid: int, port: int, answers: Callable[[int], bool]) -> int:
        """Seconds until the server answers on port; stops it if it never does."""
        start = time.monotonic()
        while time.monotonic() - start < self.start_timeout:
            if not alive(pid):
                self.pid_file.unlink(missing_ok=True)
                show_log_tail(self.log)
                raise StackError(f"{self.name}: {self.exited_message} (log: {self.log})")
            if answers(port):
                return int(time.monotonic() - start)
            time.sleep(self.poll_seconds)
        show_log_tail(self.log)
        self.stop(pid)
        raise StackError(
            f"{self.name}: not answering on 127.0.0.1:{port} after {self.start_timeout}s; "
            "stopped it"
        )

    def stop(self, pid: int) -> None:
        """SIGTERM, then SIGKILL if it is still there after stop_timeout."""
        _signal(pid, signal.SIGTERM)
        for _ in range(self.stop_timeout * 4):
            if not alive(pid):
                break
            time.sleep(0.25)
        if alive(pid):
            waited = self.stop_timeout
            say(f"{self.name}: pid {pid} ignored SIGTERM for {waited}s, sending SIGKILL")
            _signal(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def forget_stale(self) -> None:
        """Drops a pid file whose process is gone or whose pid was recycled."""
        self.pid_file.unlink(missing_ok=True)

    def down(self) -> None:
        """Stop our server if it runs, saying so; leave anything else alone."""
        pid = self.pid()
        if pid is None:
            self.forget_stale()
            say(f"{self.name}: not running (nothing started by this script)")
            return
        say(f"{self.name}: stopping pid {pid}...")
        self.stop(pid)
        say(f"{self.name}: stopped")


def nothing_to_start(
    daemon: Daemon,
    port: int,
    answers: Callable[[int], bool],
    port_open: Callable[[int], bool],
    *,
    check_port: Callable[[int], None],
    wait_ready: Callable[[int], None],
    serves_as: str,
) -> bool:
    """What `up` checks before starting a server. True when there is nothing to start: ours
    runs (or is still starting, and is waited for), or another server answers on `port` and is
    left alone. A port taken by something that does not answer as `serves_as` is refused."""
    pid = daemon.pid()
    if pid is not None:
        check_port(pid)
        if answers(port):
            say(f"{daemon.name}: already running on 127.0.0.1:{port} (pid {pid})")
        else:  # e.g. another `up` is still starting it, or it is wedged
            say(f"{daemon.name}: pid {pid} is still starting, waiting for it...")
            wait_ready(pid)
        return True
    if answers(port):
        say(f"{daemon.name}: already reachable on 127.0.0.1:{port}, leaving it alone")
        return True
    if port_open(port):
        raise StackError(
            f"{daemon.name}: 127.0.0.1:{port} is taken by something that does not answer as "
            f"{serves_as}"
        )
    return False


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(OSError):  # gone already
        os.kill(pid, signum)
