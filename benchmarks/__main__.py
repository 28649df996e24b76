"""`python -m benchmarks SCENARIO...`: run scenarios side by side and publish the tables."""

from __future__ import annotations

import argparse
import importlib
import sys

SCENARIOS = {
    "abuse": "benchmarks.scenarios.abuse",
    "http": "benchmarks.scenarios.http",
    "https": "benchmarks.scenarios.http_tls",
    "l4": "benchmarks.scenarios.l4",
    "mqtt": "benchmarks.scenarios.mqtt",
    "redis": "benchmarks.scenarios.redis",
    "routes": "benchmarks.scenarios.routes",
    "rpc": "benchmarks.scenarios.rpc",
    "runtime": "benchmarks.scenarios.runtime",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="+",
        choices=sorted(SCENARIOS),
        metavar="SCENARIO",
        help=f"one or more of: {', '.join(sorted(SCENARIOS))}",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--requests", type=int, default=0, help="override the request count")
    args = parser.parse_args(argv)
    for name in args.scenarios:
        importlib.import_module(SCENARIOS[name]).run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
