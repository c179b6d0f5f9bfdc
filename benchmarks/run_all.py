"""Run every benchmark script in turn and print their markdown tables (for the README).

Usage: python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["bench_methods.py", "bench_layers.py", "bench_occlusion.py", "bench_widget.py",
           "bench_transformers.py"]


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for script in SCRIPTS:
        path = HERE / script
        if not path.exists():
            print(f"## {script}: missing\n")
            failed.append(script)
            continue
        print(f"## {script}\n", flush=True)
        if subprocess.run([sys.executable, str(path), *extra]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
