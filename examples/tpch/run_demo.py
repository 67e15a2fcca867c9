"""The Klaw demo (`make demo`): generate TPC-H data, then validate, plan and run the Python
workflow ``tpch`` and the SQL folder workflow ``tpch_sql`` through the real ``klaw`` command
line, and show what they stored.

Run from anywhere with the project's virtualenv::

    .venv/bin/python examples/tpch/run_demo.py [--scale 0.1] [--top-n 10] [--executor ray]

Data is generated once into ``examples/tpch/data/sf<scale>/``; later runs reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TABLES = ("customer", "orders", "lineitem", "nation", "region", "supplier")
EXECUTORS = ("thread", "process", "ray")


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it (shorter commands)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def executable(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        sys.exit(
            f"error: {path} not found. Install Klaw with its demo extra first: "
            f"{BIN / 'python'} -m pip install -e '.[demo]' (or run `make demo`)."
        )
    return path


def banner(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {text}{plain}", flush=True)


def generate(scale: float, folder: Path) -> None:
    """TPC-H Parquet files at ``scale`` into ``folder``, unless they are there already."""
    if all((folder / f"{table}.parquet").is_file() for table in TABLES):
        print(f"using the TPC-H data in {shown(folder)} (delete it to generate it again)")
        return
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        str(executable("tpchgen-cli")),
        "parquet",
        "--scale-factor",
        f"{scale:g}",
        "--tables",
        ",".join(TABLES),
        "--output-dir",
        str(partial),
        "--quiet",
    ]
    print("$ " + " ".join([shown(Path(command[0])), *command[1:]]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # only a complete set of files gets the real name
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(
        f"generated {len(TABLES)} tables, {size:.1f} MiB, in {time.perf_counter() - started:.1f} s"
    )


def klaw(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``klaw`` CLI on the example project; output goes to the terminal."""
    command = [str(executable("klaw")), "--project", shown(HERE), *args]
    if not capture:
        print("$ klaw " + " ".join(command[1:]), flush=True)
    return subprocess.run(command, text=True, capture_output=capture, check=False)


def step(*args: str) -> None:
    """A klaw command that must succeed; the demo stops with its exit code otherwise."""
    result = klaw(*args)
    if result.returncode != 0:
        print(f"\nklaw {' '.join(args)} failed with exit code {result.returncode}.")
        sys.exit(result.returncode)


def latest_run(workflow: str) -> tuple[str, str]:
    """Id and state of the newest run of ``workflow``."""
    result = klaw(
        "runs", "list", "--workflow", workflow, "--limit", "1", "-o", "json", capture=True
    )
    runs = json.loads(result.stdout or "[]") if result.returncode == 0 else []
    return (str(runs[0]["run_id"]), str(runs[0]["state"])) if runs else ("RUN_ID", "unknown")


def run(workflow: str, *args: str) -> str:
    """``klaw run workflow args``; the run's id. Exits with the run's exit code unless the run
    succeeded, saying how to see why."""
    result = klaw("run", workflow, *args)
    if result.returncode == 2:  # a usage or definition error, said above: nothing ran
        print(f"\nklaw run {workflow} failed with exit code 2.")
        sys.exit(2)
    run_id, state = latest_run(workflow)
    if result.returncode != 0 or state != "succeeded":
        # The state is checked too: `klaw run` must exit 1 on a failed run, but do not rely on it.
        project = shown(HERE)
        print(f"\nThe run of {workflow} {state} (exit code {result.returncode}). See why with:")
        print(f"  klaw --project {project} runs show {run_id}")
        print(f"  klaw --project {project} logs {run_id}")
        sys.exit(result.returncode or 1)
    return run_id


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor.")
    parser.add_argument("--top-n", type=int, default=10, help="Customers in top_customers.")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="Where stages run (passed to `klaw run`); default: the project's setting (thread).",
    )
    args = parser.parse_args()
    os.environ.setdefault("COLUMNS", "120")  # wider tables when the output is not a terminal

    started = time.perf_counter()
    data_dir = Path("data") / f"sf{args.scale:g}"
    banner(f"1. TPC-H data at scale factor {args.scale:g}")
    generate(args.scale, HERE / data_dir)

    banner("2. Check every workflow of the project, and plan both")
    step("validate")
    step("plan", "tpch")
    step("plan", "tpch_sql")

    executor = ["--executor", args.executor] if args.executor else []
    params = ["--param", f"data_dir={data_dir.as_posix()}", "--param", f"top_n={args.top_n}"]
    banner("3. Run tpch (Python: Polars, DuckDB and a DataFusion SQL stage)")
    run_id = run("tpch", *params, *executor)
    banner("4. Run tpch_sql (a folder of DuckDB SQL over the assets tpch stored)")
    sql_run_id = run("tpch_sql", *executor)

    banner("5. What they stored")
    step("assets", "list")
    step("assets", "show", "revenue_by_nation_month", "--limit", "5")
    step("assets", "show", "forecast_revenue_change")
    step("assets", "show", "region_volume", "--limit", "7")

    home = HERE / ".klaw"
    project = shown(HERE)
    banner(f"Done in {time.perf_counter() - started:.1f} s")
    print(f"""Everything the runs recorded is under {shown(home)}/:
  {shown(home / "klaw.db")}      runs, stage attempts, events and logs (SQLite)
  {shown(home / "lake.sqlite")}  the DuckLake catalog: assets and their snapshots
  {shown(home / "lake")}/        the snapshots' Parquet files

Look around with (klaw is in .venv/bin; `source .venv/bin/activate` puts it on PATH):
  klaw --project {project} runs list
  klaw --project {project} runs show {run_id}
  klaw --project {project} runs show {sql_run_id}
  klaw --project {project} logs {run_id} --stage quality_check
  klaw --project {project} assets show top_customers
  klaw --project {project} assets show pricing_summary
  klaw --project {project} assets show revenue_by_nation_month --snapshot N
Or in the web UI: workflows, a launch form, live runs, logs and every snapshot
  klaw --project {project} dev      (then open the Web UI link it prints)
Run them again (a new snapshot of every asset) with:
  klaw --project {project} run tpch {" ".join([*params, *executor])}
  klaw --project {project} run tpch_sql {" ".join(["--param", "min_revenue=4.5e6", *executor])}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
