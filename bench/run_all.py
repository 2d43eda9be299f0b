"""``make bench``: every benchmark in turn, each bounded in time, figures printed and kept.

Each benchmark runs in its own process on its own throw-away stack; the whole output is also
written to ``bench/out/<UTC time>.txt`` for RESULTS.md. Usage: ``.venv/bin/python -m
bench.run_all [--only peers,rollback] [--lanes 1000]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# (module, arguments, time bound in seconds)
BENCHES: list[tuple[str, list[str], int]] = [
    ("peers", [], 600),
    ("overhead", [], 900),
    ("rollback", [], 600),
    ("scale", [], 900),
    ("people", [], 420),
    ("fleet", [], 900),
    ("cli_start", [], 300),
    ("lane_bench", ["--rounds", "3"], 600),
]


def machine() -> str:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "?")
    return (f"{platform.node()}: {os.cpu_count()} cores, {int(memory) // 1024 // 1024} GiB, "
            f"{platform.platform()}, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run")
    parser.add_argument("--lanes", default="1000", help="idle lanes for the scale benchmark")
    args = parser.parse_args()
    chosen = set(filter(None, args.only.split(",")))
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    log_path = out / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.txt"
    with log_path.open("w") as log:
        def emit(text: str) -> None:
            print(text, flush=True)
            log.write(text + "\n")
            log.flush()

        emit(f"# Slipway benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n# {machine()}")
        failed = []
        for name, extra, bound in BENCHES:
            if chosen and name not in chosen:
                continue
            if name == "scale":
                extra = ["--lanes", args.lanes]
            command = [sys.executable, "-m", f"bench.{name}", *extra]
            emit(f"\n$ {' '.join(['python', '-m', f'bench.{name}', *extra])}")
            began = time.monotonic()
            try:
                result = subprocess.run(command, cwd=BENCH.parent, capture_output=True,
                                        text=True, timeout=bound)
                output, code = result.stdout + result.stderr[-3000:], result.returncode
            except subprocess.TimeoutExpired as error:
                output = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) \
                    else (error.stdout or "")
                code = -1
                output += f"\n(stopped after its bound of {bound}s)"
            for line in output.rstrip().splitlines():
                if not line.startswith(("20", "time=")):  # log lines of the stack
                    emit(line)
            emit(f"({name}: {time.monotonic() - began:.0f}s, exit {code})")
            if code != 0:
                failed.append(name)
        emit(f"\nfigures kept in {log_path.relative_to(BENCH.parent)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
