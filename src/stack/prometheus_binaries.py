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
            ["apt-get", "install", "-y", "-qq", "prometheus"], log, env=noninteractive
        )
    if not installed or not (_executable(PROMTOOL) and _executable(SERVER)):
        show_log_tail(APT_LOG)
        raise StackError(f"prometheus: apt-get install prometheus failed (log: {APT_LOG})")
    _stop_system_service()


def _executable(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _stop_system_service() -> None:
    """Where systemd runs, the package's postinst starts a server on :9090; the tests start
    their own, so it is stopped (and left enabled, as the package set it)."""
    if shutil.which("systemctl") is None:
        return
    active = (
        subprocess.run(["systemctl", "is-active", "--quiet", "prometheus"], check=False).returncode
        == 0
    )
    if active and subprocess.run(["systemctl", "stop", "prometheus"], check=False).returncode:
        raise StackError("prometheus: could not stop the system service the package started")
    if active:
        say("prometheus: stopped the system service that the package install started")
