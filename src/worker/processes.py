"""`payment-worker run` with WORKER_PROCESSES above 1: that many worker processes, one command.

One worker process runs its Python and its batch's database statements one after the other, so
it leaves a second core mostly idle (docs/performance.md). Several processes in one consumer
group fill it. This supervisor starts them, each a whole `payment-worker run` with the same
settings: they join one group and split the partitions between them, as separately started
workers would. Process i serves its own sidecar on PAYMENT_SERVICE_PORT + i.

It is crash-only, as one worker is: when a process exits without being asked to, the others
are stopped and the supervisor exits non-zero, saying which one, so that whatever restarts the
service starts all of them again. A signal (SIGTERM, SIGINT) stops every process (each is sent
SIGTERM); the supervisor exits 0 once all have stopped cleanly. A process that outlives its
grace (WORKER_SHUTDOWN_GRACE_SECONDS, and some more for closing) is killed. If the supervisor itself
dies, the kernel sends each process SIGTERM (Linux), so none is left consuming on its own.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from worker.settings import Settings

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Beyond a process's own grace: closing its clients and the sidecar after the last batch.
CLOSING_SECONDS = 20.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PER_PROCESS = frozenset({"WORKER_PROCESSES", "PAYMENT_SERVICE_PORT"})
COMMAND = (sys.executable, "-m", "worker", "run")


def child_environment(settings: Settings, index: int, base: Mapping[str, str]) -> dict[str, str]:
    """Process `index`'s environment: the supervisor's, as one process, on its own port.
    Settings ignore case, so every spelling of the two variables is replaced."""
    return {
        **{k: v for k, v in base.items() if k.upper() not in _PER_PROCESS},
        "WORKER_PROCESSES": "1",
        "PAYMENT_SERVICE_PORT": str(settings.payment_service_port + index),
    }


async def supervise(
    settings: Settings,
    command: Sequence[str] = COMMAND,
    closing_seconds: float = CLOSING_SECONDS,
) -> int:
    """Run WORKER_PROCESSES worker processes (each `command`) until a signal, or until one of
    them exits. A process still running `closing_seconds` after its grace is killed."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    children: list[asyncio.subprocess.Process] = []
    try:
        for index in range(settings.worker_processes):
            if not stop.is_set():
                children.append(await _start(settings, index, command))
        exits = {asyncio.ensure_future(c.wait()): i for i, c in enumerate(children)}
        asked = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*exits, asked], return_when=asyncio.FIRST_COMPLETED)
        # A signal that reached a process too (Ctrl-C reaches them all) may let it exit first.
        first = None if stop.is_set() else min(exits[t] for t in done if t in exits)
        if first is not None:
            log.error(
                "worker process %d exited with code %s without being asked to: stopping the rest",
                first,
                children[first].returncode,
                extra={
                    "action": "process_exited",
                    "worker_process": first,
                    "child_pid": children[first].pid,
                },
            )
        else:
            log.info("stopping every worker process", extra={"action": "shutdown"})
        asked.cancel()
        codes = await _stop_all(children, settings.worker_shutdown_grace_seconds + closing_seconds)
        # A process stopped by the signal itself (one still starting, with no handler yet)
        # stopped as asked.
        asked_to = {0, -signal.SIGTERM, -signal.SIGINT} if first is None else {0}
        exit_code = 0 if first is None and all(c in asked_to for c in codes) else 1
    except Exception:
        log.exception("the supervisor failed: stopping every worker process", extra={
            "action": "crash"})  # fmt: skip
        codes, exit_code = [], 1
    finally:
        for child in children:  # only if the supervisor itself failed on the way
            if child.returncode is None:
                child.kill()
                await child.wait()
        for sig in _SIGNALS:  # after the last wait: a second signal must not cut it short
            loop.remove_signal_handler(sig)
    log.info("stopped", extra={"action": "stopped", "exit_code": exit_code, "codes": codes})
    return exit_code


async def _start(
    settings: Settings, index: int, command: Sequence[str]
) -> asyncio.subprocess.Process:
    parent = os.getpid()
    child = await asyncio.create_subprocess_exec(
        *command,
        env=child_environment(settings, index, os.environ),
        preexec_fn=lambda: _stop_with(parent),
    )
    log.info(
        "worker process %d started",
        index,
        extra={
            "action": "process_started",
            "worker_process": index,
            "child_pid": child.pid,
            "port": settings.payment_service_port + index,
        },
    )
    return child


# Looked up once, here: between fork and exec the new process calls it and nothing else that
# could need a lock another thread of the supervisor (asyncio's child watchers) might hold.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _stop_with(parent: int) -> None:
    """In the new process, before it runs Python: SIGTERM when the supervisor dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before the line above took effect
        os._exit(1)


async def _stop_all(children: list[asyncio.subprocess.Process], within: float) -> list[int]:
    """SIGTERM to each running process; SIGKILL to any still running after `within` s."""
    for child in children:
        if child.returncode is None:
            child.terminate()
    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*(c.wait() for c in children))
    except TimeoutError:
        for index, child in enumerate(children):
            if child.returncode is None:
                log.error(  # noqa: TRY400 - the timeout says it all: no traceback
                    "worker process %d did not stop in %g s: killed",
                    index,
                    within,
                    extra={
                        "action": "process_killed",
                        "worker_process": index,
                        "child_pid": child.pid,
                    },
                )
                child.kill()
        await asyncio.gather(*(c.wait() for c in children))
    return [c.returncode if c.returncode is not None else -1 for c in children]
