"""Produce records no well-behaved client would: a header name that is not UTF-8.

aiokafka's own producer writes header names as UTF-8 from Python text, so the bytes of such a
name cannot be asked of it directly. Its pure-Python record builder (chosen by the environment
variable AIOKAFKA_NO_EXTENSIONS, read when aiokafka is imported) calls the name's `encode`,
so a text whose `encode` returns other bytes gets them written as they are. That runs in a
process of its own: `send_unreadable` starts one.

    python -m tests.raw_records BOOTSTRAP TOPIC KEY VALUE [VALUE ...]

sends each VALUE with KEY, in one producer batch, in order; a VALUE starting with "!" gets a
header whose name is the bytes FF FE (not UTF-8). Prints each record's partition and offset.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka import AIOKafkaProducer

from tests.support import ROOT

UNREADABLE_NAME = b"\xff\xfe"


class _RawName(str):
    """A header name whose UTF-8 encoding is replaced by arbitrary bytes."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return UNREADABLE_NAME


async def _send(bootstrap: str, topic: str, key: str, values: list[str]) -> None:
    if not os.environ.get("AIOKAFKA_NO_EXTENSIONS"):
        raise SystemExit("run with AIOKAFKA_NO_EXTENSIONS=1 (see the module's docstring)")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=500, acks="all")
    await producer.start()
    try:
        deliveries = []
        for value in values:
            headers = [(_RawName("x"), b"1")] if value.startswith("!") else []
            deliveries.append(
                await producer.send(topic, value.encode(), key=key.encode(), headers=headers)
            )
        for delivery in deliveries:
            sent = await delivery
            print(sent.partition, sent.offset)
    finally:
        await producer.stop()


async def send_unreadable(
    bootstrap: str, topic: str, key: str, values: list[str]
) -> list[tuple[int, int]]:
    """Send `values` in one batch (see the module's docstring); their (partition, offset)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.raw_records",
        bootstrap,
        topic,
        key,
        *values,
        env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"raw producer failed: {err.decode(errors='replace')}")
    return [
        (int(partition), int(offset))
        for partition, offset in (line.split() for line in out.decode().splitlines())
    ]


if __name__ == "__main__":
    asyncio.run(_send(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
