"""Run every benchmark module and write BENCHMARKS.md.

Usage: `python -m bench [--quick] [--only NAME ...] [--out BENCHMARKS.md]`.

Each `bench/bench_<area>.py` exposes `run(quick: bool) -> str` returning a Markdown section. Every
figure is a ratio against a baseline measured in the same run, because these machines are noisy;
absolute times are printed beside the ratio for context only. A benchmark that fails is reported
in the file with its error instead of aborting the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER_START = "<!-- bench:{name}:start -->"
MARKER_END = "<!-- bench:{name}:end -->"


def discover() -> list[str]:
    """Names of the benchmark modules, e.g. ["context", "engine"]."""
    names = [m.name for m in pkgutil.iter_modules([str(ROOT / "bench")])]
    return sorted(n.removeprefix("bench_") for n in names if n.startswith("bench_"))


def machine_line() -> str:
    """One line describing where the figures were measured."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{dt.date.today().isoformat()}, commit {sha or 'unknown'}, {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}"
    )


def run_one(name: str, quick: bool) -> str:
    """Run one benchmark module and return its Markdown section (or the error it raised)."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.bench_{name}")
        body = module.run(quick=quick).strip()
    except Exception:  # a boundary: one broken benchmark must not hide the others
        body = f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}```"
    took = time.perf_counter() - start
    return f"{body}\n\n_Measured {machine_line()}; took {took:.0f} s._"


def replace_section(text: str, name: str, section: str) -> str:
    """Put `section` between this benchmark's markers, appending it if the markers are absent."""
    start, end = MARKER_START.format(name=name), MARKER_END.format(name=name)
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    return text.rstrip() + "\n\n" + block + "\n"


HEADER = """# Benchmarks

Written by `make bench` (`python -m bench`). Each section is replaced when its benchmark runs
again. Figures are ratios against a baseline measured in the same run on the same machine (these
machines are noisy); absolute numbers are context only. Timing thresholds are never asserted in
tests — targets from the issues are listed beside the measured figures.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m bench`."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = args.only or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; available: {discover()}")
    text = args.out.read_text() if args.out.exists() else HEADER
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section = run_one(name, args.quick)
        text = replace_section(text, name, section)
        args.out.write_text(text)  # after each one, so a later crash keeps earlier figures
        print(section, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
