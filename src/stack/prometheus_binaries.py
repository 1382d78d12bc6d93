"""Prometheus's programs from Debian's `prometheus` package: `promtool`, which checks and
unit-tests the alert rules, and the server the operations tests scrape a live worker with.
Installed with apt-get when absent; never started here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from stack.process import StackError, run_logged, say, show_log_tail

PROMTOOL = Path("/usr/bin/promtool")
SERVER = Path("/usr/bin/prometheus")
APT_LOG = Path("/tmp/stack-apt-prometheus.log")  # noqa: S108 - outside STACK_DIR on purpose


def install() -> None:
    """Install the package unless both programs are there."""
    if _executable(PROMTOOL) and _executable(SERVER):
        say(f"prometheus: {PROMTOOL} and {SERVER} installed")
        return
    say("prometheus: not installed; installing Debian's prometheus package...")
    noninteractive = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with APT_LOG.open("wb") as log:
        installed = run_logged(["apt-get", "update", "-qq"], log) and run_logged(
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "-o",
                "DPkg::Lock::Timeout=300",
                "prometheus",
            ],
            log,
            env=noninteractive,
        )
    if not installed or not (_executable(PROMTOOL) and _executable(SERVER)):
        show_log_tail(APT_LOG)
        raise StackError(f"prometheus: apt-get install prometheus failed (log: {APT_LOG})")
    _stop_system_service()


def _executable(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _stop_system_service() -> None:
    """Where systemd runs, the package's postinst starts and enables a server on *:9090; the
    tests start their own on loopback, so it is stopped and disabled (nothing of the stack
    listens beyond loopback, also after a reboot)."""
    if shutil.which("systemctl") is None:
        return
    disabled = subprocess.run(
        ["systemctl", "disable", "--now", "prometheus"], check=False, capture_output=True
    )
    if disabled.returncode == 0:
        say("prometheus: stopped and disabled the system service the package install set up")
