"""Run the benchmarks one after the other: `python -m bench [NAME ...]`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# Each writes bench/results/NAME.json; cheap ones first; the arguments `make bench` runs
# it with (the fleet: its four 50-agent acceptance runs).
BENCHMARKS: dict[str, list[str]] = {
    "train_throughput": [],
    "profile_stability": [],
    "api_poll": [],
    "inference": [],
    "decode_attention": [],
    "search": [],
    "latency_model": [],
    "system": [],
    "fleet": ["--acceptance"],
}


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    available = [name for name in BENCHMARKS if (here / f"{name}.py").exists()]
    chosen = argv or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(
            f"error: unknown benchmark {unknown[0]!r}; available: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    for name in chosen:
        print(f"== bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main(BENCHMARKS[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
