"""One process of the end-to-end floor in a consumer group (`bench.run.raw_end_to_end`).

`scripts/bench` starts `--processes` of these on empty topics, waits until the group has handed
out every partition, produces the workload and times the group to the last committed offset.
Each prints `assigned N` whenever its assignment changes, and runs until it is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc

from bench.run import Scenario, raw_end_to_end
from bench.workload import MIXES, generate


async def main(args: argparse.Namespace) -> None:
    workload = generate(args.events, args.students, seed=args.seed, mix=MIXES[args.mix])
    gc.freeze()
    scenario = Scenario("raw-e2e", args.server_url, args.bootstrap, tag=args.tag)

    def assigned(partitions: set[object]) -> None:
        print(f"assigned {len(partitions)}", flush=True)

    await raw_end_to_end(scenario, workload, workload.events, group=args.group, assigned=assigned)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("server-url", "bootstrap", "tag", "group", "mix"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--students", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42, help="the workload's seed (default 42)")
    asyncio.run(main(parser.parse_args()))
