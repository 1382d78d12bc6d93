"""Kafka's jars: kafka_2.13 and kafka-tools (kafka-acls, kafka-configs) with their runtime
dependencies, resolved once by Maven into the
cache (STACK_CACHE), which resets keep."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stack.process import (
    StackError,
    remove_leftovers,
    run_logged,
    say,
    show_lines,
    show_log_tail,
)
from stack.settings import Settings

MAVEN_DEP_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

POM = """\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.stack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def lacks_tools(settings: Settings) -> bool:
    """Whether the jars were resolved by a version of this script before Kafka's tools."""
    libs = settings.kafka_libs
    return libs.is_dir() and _first(libs, "kafka-tools-[0-9]*.jar") is None


def ensure(settings: Settings) -> None:
    """Resolves the jars into settings.kafka_libs unless they are there. They land in a temp
    dir first and are renamed into place, so an interrupted resolve leaves no half-filled libs
    dir and is simply redone next time."""
    libs = settings.kafka_libs
    if libs.is_dir():
        if _first(libs, "kafka-tools-[0-9]*.jar") is not None:
            return
        # Resolved by a version of this script before the tools (kafka-acls) were added: the
        # full set is resolved beside them and replaces them only once it is complete.
        say("kafka: adding Kafka's tools to the resolved jars")
    if shutil.which("mvn") is None:
        raise StackError("kafka: mvn not found; install Maven (apt-get install maven)")
    say("kafka: resolving jars with Maven (first time only)...")
    version = settings.kafka_version
    cache = settings.stack_cache
    cache.mkdir(parents=True, exist_ok=True)
    remove_leftovers(cache, f".kafka-{version}.")  # of an interrupted run
    log_path = cache / f"kafka-{version}-maven.log"
    with (
        tempfile.TemporaryDirectory(prefix=f".kafka-{version}.", dir=cache) as tmp,
        log_path.open("wb") as log,
    ):
        maven = _Maven(version, Path(tmp), log_path, log)
        (maven.project / "pom.xml").write_text(POM.format(version=version))
        resolved = maven.project / "libs"
        maven.run(
            f"{MAVEN_DEP_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={resolved}",
        )
        _add_log_binding(maven, resolved)
        libs.parent.mkdir(parents=True, exist_ok=True)
        if libs.is_dir():  # the set without the tools: out of the way, then gone
            old = Path(tmp) / "old-libs"
            libs.rename(old)
        resolved.rename(libs)
    say(f"kafka: {sum(1 for _ in libs.rglob('*.jar'))} jars in {libs}")


@dataclass(frozen=True)
class _Maven:
    """Runs Maven in one project dir, its output kept in the cache to inspect a failure."""

    kafka_version: str
    project: Path
    log_path: Path
    log: IO[bytes]

    def run(self, *args: str) -> None:
        maven = ["mvn", "-B", "-U", "-Dstyle.color=never", *args]
        if run_logged(maven, self.log, cwd=self.project):
            return
        # Maven's [ERROR] lines say what went wrong; its last lines are boilerplate.
        print(f"  --- errors from {self.log_path} ---", file=sys.stderr)
        text = self.log_path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if re.search(r"\[ERROR\] .", line)]
        if errors:
            show_lines(errors[:12])
        else:
            show_log_tail(self.log_path)
        raise StackError(
            f"kafka: Maven failed resolving Kafka {self.kafka_version} (full log: {self.log_path})"
        )


def _add_log_binding(maven: _Maven, libs: Path) -> None:
    """Kafka ships no SLF4J binding, so the broker would log nothing ("SLF4J NOP"). Adds the
    log4j2 binding matching the log4j-core and SLF4J generation Kafka pulled in; older Kafka
    versions without log4j-core just stay silent."""
    core = _first(libs, "log4j-core-2.*.jar")
    if core is None:
        return
    log4j_version = core.removeprefix("log4j-core-").removesuffix(".jar")
    slf4j = _first(libs, "slf4j-api-*.jar") or ""
    binding = "log4j-slf4j2-impl" if slf4j.startswith("slf4j-api-2.") else "log4j-slf4j-impl"
    maven.run(
        f"{MAVEN_DEP_PLUGIN}:copy",
        f"-Dartifact=org.apache.logging.log4j:{binding}:{log4j_version}",
        f"-DoutputDirectory={libs}",
    )


def _first(directory: Path, pattern: str) -> str | None:
    return next((path.name for path in sorted(directory.glob(pattern))), None)
