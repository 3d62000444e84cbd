"""Run every benchmark under bench/ in turn and print their figures (`make bench`).

Each script is also runnable alone: `.venv/bin/python bench/<name>.py --help`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["cli_bench.py", "match_bench.py", "start_bench.py", "load.py", "dispatch_bench.py", "jenkins_dispatch.py",
         "changes_bench.py", "pulls_bench.py", "pg_bench.py", "ui_bench.py", "flood.py"]


def main() -> int:
    failed = 0
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(script)], cwd=HERE.parent) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
