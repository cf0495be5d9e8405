"""Time the CLI's light commands against a bare `import yaml, pydantic`, in one run.

Each command runs as a fresh `python` process, the way a user or a CI step runs it.
The commands are interleaved (one run of each, then the next round) so that a slow
moment on the machine hits every command alike, and each figure is the median of its
runs, divided by the median of the baseline. A second pass runs each command in-process
and lists the heavy modules (torch, transformers, modal, ...) it left in sys.modules.

    python benchmarks/bench_cli.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "modal", "accelerate", "huggingface_hub", "fastapi",
         "uvicorn", "safetensors", "PIL", "numpy")
# A dummy key long enough not to match inside other words when plan redacts it.
DUMMY_API_KEY = "bench-dummy-api-key-0123456789"

# Runs the CLI in this process, then prints the heavy top-level modules it imported.
IMPORT_PROBE = """
import contextlib, io, json, runpy, sys
sys.argv = ["moondream_iac", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        runpy.run_module("moondream_iac", run_name="__main__")
    except SystemExit:
        pass
heavy = %r
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & set(heavy))))
""" % (HEAVY,)


def commands() -> dict[str, list[str]]:
    """Return each measured command by name; the baseline comes first."""
    cli = [sys.executable, "-m", "moondream_iac"]
    return {
        "baseline: import yaml, pydantic": [sys.executable, "-c", "import yaml, pydantic"],
        "--help": [*cli, "--help"],
        "validate": [*cli, "validate", "-f", "deploy.yaml"],
        "explain": [*cli, "explain", "-f", "deploy.yaml"],
        "render": [*cli, "render", "-f", "deploy.yaml", "-o", "build"],
        "plan (local target, no refresh)": [*cli, "plan", "-f", "deploy.yaml", "--target",
                                            "local", "--no-refresh"],
    }


def run_once(argv: list[str], folder: Path, environment: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=folder, env=environment, capture_output=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): "
                         f"{result.stderr.decode(errors='replace')}")
    return elapsed


def measure(runs: int, folder: Path, environment: dict[str, str]) -> dict[str, list[float]]:
    """Run every command ``runs`` times, interleaved, after one warm-up round."""
    table = commands()
    times: dict[str, list[float]] = {name: [] for name in table}
    for round_index in range(runs + 1):
        for name, argv in table.items():
            elapsed = run_once(argv, folder, environment)
            if round_index > 0:
                times[name].append(elapsed)
    return times


def heavy_imports(folder: Path, environment: dict[str, str]) -> dict[str, list[str]]:
    """Return, for each CLI command, the heavy modules it imported."""
    found = {}
    for name, argv in commands().items():
        if name.startswith("baseline"):
            continue
        cli_arguments = argv[3:]
        result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *cli_arguments],
                                cwd=folder, env=environment, capture_output=True, text=True,
                                check=True)
        found[name] = json.loads(result.stdout)
    return found


def machine() -> str:
    return (f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Runs per command. Default 15.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    options = parser.parse_args()

    environment = {**os.environ, "MOONDREAM_API_KEY": DUMMY_API_KEY, "NO_COLOR": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        shutil.copy(ROOT / "deploy.yaml", folder / "deploy.yaml")
        times = measure(options.runs, folder, environment)
        imports = heavy_imports(folder, environment)

    baseline = statistics.median(next(iter(times.values())))
    rows = [
        {"command": name, "median_s": round(statistics.median(values), 4),
         "ratio": round(statistics.median(values) / baseline, 2),
         "heavy_imports": imports.get(name, [])}
        for name, values in times.items()
    ]
    if options.json:
        print(json.dumps({"machine": machine(), "runs": options.runs, "rows": rows}, indent=2))
        return

    print(f"{machine()}; median of {options.runs} runs each, interleaved")
    print("| command | median (s) | ratio to baseline | heavy modules imported |")
    print("|---|---|---|---|")
    for row in rows:
        heavy = ", ".join(row["heavy_imports"]) or "none"
        if row["command"].startswith("baseline"):
            heavy = "n/a"
        print(f"| `{row['command']}` | {row['median_s']:.3f} | {row['ratio']:.2f} | {heavy} |")


if __name__ == "__main__":
    main()
