"""`python -m bench [NAME ...]`: run the named benchmarks, or all of them but the opt-in ones."""

from __future__ import annotations

import importlib
import sys

# name → module with a main() -> int
BENCHES = {
    "imports": "bench.imports",
    "metrics": "bench.metrics",
    "history": "bench.history",
    "drift": "bench.drift",
    "customers": "bench.customers",
    "clv": "bench.clv",
    "board": "bench.board",
    "streams": "bench.streams",
    "spark": "bench.spark",
}
# Run only when named: `spark` takes a quarter of an hour or more (10 M events, two engines).
OPT_IN = {"spark"}


def main(argv: list[str]) -> int:
    names = argv or [name for name in BENCHES if name not in OPT_IN]
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        print(f"Unknown benchmark {', '.join(unknown)}; the benchmarks are: {', '.join(BENCHES)}.")
        return 2
    status = 0
    for name in names:
        print(f"== {name}", flush=True)
        status |= importlib.import_module(BENCHES[name]).main()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
