"""Run every benchmark in turn and print its table (``make bench``; ``--quick`` for a smoke run).

Each benchmark prints its own table with ratios to a baseline measured in the
same run; these machines are noisy, so compare ratios, not absolute times.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_book.py", "bench_matching.py", "bench_engine.py", "bench_router.py", "bench_journal.py", "bench_ccxt.py"]


def main() -> int:
    extra = ["--quick"] if "--quick" in sys.argv[1:] else []
    failed = []
    for name in BENCHES:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(script), *extra]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
