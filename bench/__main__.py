"""``python -m bench [name ...]``: run benchmarks and append their results to bench/results.md."""

from __future__ import annotations

import importlib
import sys

from . import HERE, RESULTS, append_results


def main(names: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark {unknown[0]}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    sections = []
    for name in names or available:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        section = importlib.import_module(f"bench.bench_{name}").run()
        print(section, flush=True)
        sections.append(section)
    append_results(sections)
    print(f"bench: appended to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
