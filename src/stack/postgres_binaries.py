"""PostgreSQL's programs: which installed major serves a data dir, and Debian's postgresql
package installed with apt-get when there is none."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from stack.process import StackError, run_logged, say, show_log_tail

INSTALL_ROOT = Path("/usr/lib/postgresql")
APT_LOG = Path("/tmp/stack-apt-postgresql.log")  # noqa: S108 - outside STACK_DIR on purpose


def find(data: Path) -> Path | None:
    """The server's bin dir: the major that created the data dir, else the newest installed."""
    wanted = _data_version(data)
    if wanted is not None:
        bin_dir = INSTALL_ROOT / wanted / "bin"
        if _executable(bin_dir / "postgres"):
            return bin_dir
        raise StackError(
            f"postgres: {data} was created by PostgreSQL {wanted}, which is not installed; install "
            f"postgresql-{wanted}, or run 'scripts/stack reset' (deletes all the stack's data)"
        )
    newest = _newest()
    if newest and _executable(newest / "pg_ctl") and _executable(newest / "postgres"):
        return newest
    return None


def isready(data: Path) -> str | None:
    """pg_isready beside the server, else the one on PATH."""
    wanted = _data_version(data)
    bin_dir = INSTALL_ROOT / wanted / "bin" if wanted else _newest()
    if bin_dir and _executable(bin_dir / "pg_isready"):
        return str(bin_dir / "pg_isready")
    return shutil.which("pg_isready")


def install(data: Path) -> Path:
    """The server's bin dir, after installing Debian's package if no server is there."""
    bin_dir = find(data)
    if bin_dir is not None:
        return bin_dir
    say("postgres: server not installed; installing Debian's postgresql package...")
    noninteractive = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with APT_LOG.open("wb") as log:
        installed = run_logged(["apt-get", "update", "-qq"], log) and run_logged(
            ["apt-get", "install", "-y", "-qq", "postgresql"], log, env=noninteractive
        )
    if not installed:
        show_log_tail(APT_LOG)
        raise StackError(f"postgres: apt-get install postgresql failed (log: {APT_LOG})")
    bin_dir = find(data)
    if bin_dir is None:
        raise StackError(
            "postgres: installed the package but found no /usr/lib/postgresql/*/bin/initdb"
        )
    _stop_system_clusters()
    return bin_dir


def _data_version(data: Path) -> str | None:
    try:
        return (data / "PG_VERSION").read_text().rstrip("\n")
    except OSError:
        return None


def _newest() -> Path | None:
    """Found by initdb, not bin/: a newer client-only package has a bin/ too."""
    found = sorted(INSTALL_ROOT.glob("*/bin/initdb"), key=_version_key)
    return found[-1].parent if found else None


def _version_key(initdb: Path) -> list[tuple[int, str]]:
    """Orders /usr/lib/postgresql/<major>/bin/initdb like `sort -V`: 9.6 before 15."""
    parts = re.split(r"([0-9]+)", initdb.parent.parent.name)
    return [(int(part), "") if part.isdigit() else (-1, part) for part in parts if part]


def _executable(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _stop_system_clusters() -> None:
    """The package's postinst may start the Debian cluster on 5432; we run our own cluster
    instead, so get it out of the way."""
    if shutil.which("pg_lsclusters") is None:
        return
    listed = subprocess.run(
        ["pg_lsclusters", "-h"],
        check=False,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    for line in listed.stdout.splitlines():
        version, name, port, status = [*line.split(), "", "", "", ""][:4]
        if not status.startswith("online"):
            continue
        if subprocess.run(["pg_ctlcluster", version, name, "stop"], check=False).returncode:
            raise StackError(f"postgres: could not stop the Debian system cluster {version}/{name}")
        say(
            f"postgres: stopped the Debian system cluster {version}/{name} (port {port}) that "
            "the package install started"
        )
