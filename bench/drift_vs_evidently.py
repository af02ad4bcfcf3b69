"""Drift detection: mlpilot.monitor vs Evidently 0.7 on the same data, side by side.

Generates a reference and a current table of N rows x 25 columns (20 numeric, 5 categorical) with drift planted
in 3 columns (num_03: +0.25 SD mean shift, num_11: SD x 1.4, cat_2: category shares moved), writes them as
Parquet, then runs each tool in its own subprocess: Evidently with the Python of its own virtualenv, mlpilot with
this one. The Evidently child loads the data as pandas first and times the drift computation; the mlpilot child
hands ``compare`` the two Parquet paths (read column by column inside the timed check), and a third child runs
mlpilot on preloaded Arrow tables for comparison. Each reports its peak RSS (VmHWM) during the check (imports and
loaded data included; the counter is reset just before, see ``_settle``) and the columns it flagged. Nothing is installed here; create Evidently's virtualenv first::

    python3 -m venv /tmp/evidently-venv && /tmp/evidently-venv/bin/pip install 'evidently==0.7.*' 'pandas<3'

Run:  .venv/bin/python bench/drift_vs_evidently.py [--rows 100000 1000000] [--repeat 3] [--evidently-python PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
PLANTED = ["num_03", "num_11", "cat_2"]
CAT_LEVELS = [3, 5, 5, 12, 40]
CAT2_REF = [0.40, 0.30, 0.15, 0.10, 0.05]
CAT2_CUR = [0.22, 0.30, 0.22, 0.14, 0.12]


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _settle() -> float:
    """Free what loading left behind and restart the peak-RSS counter, so peaks measure the check itself.

    Both children do exactly this after loading their data: collect garbage, hand freed heap back to the OS
    (Arrow's pool, malloc_trim), then reset VmHWM by writing 5 to /proc/self/clear_refs. Returns the RSS the check starts from.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        import pyarrow as pa  # both children read Parquet through Arrow: return its pooled pages too

        pa.default_memory_pool().release_unused()
    except ImportError:
        pass
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    return _rss_mb()


def generate(rows: int, folder: Path, seed: int = 7) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    def table(rng: np.random.Generator, drift: bool) -> pa.Table:
        cols: dict[str, Any] = {}
        base = rng.normal(size=(rows, 20))
        base[:, 1] = 0.7 * base[:, 0] + 0.3 * base[:, 1]  # some correlated pairs
        base[:, 5] = 0.5 * base[:, 4] + 0.5 * base[:, 5]
        for i, name in enumerate(NUMERIC):
            x = base[:, i]
            if i % 4 == 1:
                x = np.exp(0.5 * x)  # skewed
            elif i % 4 == 2:
                x = np.round(10 + 3 * x)  # integer-valued with ties
            elif i % 4 == 3:
                x = 100 + 15 * x
            cols[name] = x
        if drift:
            sd = 15.0
            cols["num_03"] = cols["num_03"] + 0.25 * sd
            cols["num_11"] = 100 + (cols["num_11"] - 100) * 1.4
        for k, name in enumerate(CATEGORICAL):
            levels = np.array([f"{name}_v{j}" for j in range(CAT_LEVELS[k])])
            if name == "cat_2":
                p = np.array(CAT2_CUR if drift else CAT2_REF)
            else:
                w = 1.0 / np.arange(1, CAT_LEVELS[k] + 1)
                p = w / w.sum()
            cols[name] = levels[rng.choice(CAT_LEVELS[k], size=rows, p=p)]
        return pa.table(cols)

    ref_path, cur_path = folder / f"ref_{rows}.parquet", folder / f"cur_{rows}.parquet"
    pq.write_table(table(np.random.default_rng(seed), False), ref_path)
    pq.write_table(table(np.random.default_rng(seed + 1), True), cur_path)
    return ref_path, cur_path


# --- children -------------------------------------------------------------------------------------------------


def child_mlpilot(ref_path: str, cur_path: str) -> dict[str, Any]:
    """mlpilot as it is meant to be used on files: ``compare`` gets the two Parquet paths and reads each column
    when it profiles it. Reading the files is inside the timed and measured part (Evidently's is not)."""
    import pyarrow.parquet  # noqa: F401  # the Parquet reader's library, imported before timing like Evidently's

    import mlpilot.monitor as monitor

    compare = monitor.compare  # imported before timing, as Evidently is
    loaded = _settle()
    start = time.perf_counter()
    report = compare(ref_path, cur_path)
    flagged = report.drifted_features
    elapsed = time.perf_counter() - start
    extra = {"multivariate_drift": bool(report.multivariate and report.multivariate.drifted)}
    return {"seconds": elapsed, "peak_mb": _peak_rss_mb(), "loaded_mb": loaded, "flagged": flagged, **extra}


def child_mlpilot_tables(ref_path: str, cur_path: str) -> dict[str, Any]:
    """mlpilot on tables already in memory (loaded with ``pq.read_table`` before the check), like Evidently."""
    import pyarrow.parquet as pq

    import mlpilot.monitor as monitor

    ref, cur = pq.read_table(ref_path), pq.read_table(cur_path)
    compare = monitor.compare
    loaded = _settle()
    start = time.perf_counter()
    report = compare(ref, cur)
    flagged = report.drifted_features
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "peak_mb": _peak_rss_mb(), "loaded_mb": loaded, "flagged": flagged}


def child_evidently(ref_path: str, cur_path: str) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found]
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    loaded = _settle()
    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    flagged = []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        value, threshold = metric["value"], config["threshold"]
        is_pvalue = "p_value" in config.get("method", "")
        if (value < threshold) if is_pvalue else (value >= threshold):
            flagged.append(config["column"])
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "peak_mb": _peak_rss_mb(), "loaded_mb": loaded, "flagged": sorted(flagged)}


# --- parent ---------------------------------------------------------------------------------------------------


def run_children(python: str, tool: str, ref: Path, cur: Path, repeat: int) -> dict[str, Any]:
    """``repeat`` fresh processes; the median time and the largest peak (the box is shared: one run can be
    unlucky)."""
    runs = [run_child(python, tool, ref, cur) for _ in range(repeat)]
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**best, "peak_mb": max(r["peak_mb"] for r in runs), "runs": len(runs)}


def run_child(python: str, tool: str, ref: Path, cur: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [python, __file__, "--child", tool, str(ref), str(cur)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tool} child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _machine() -> str:
    mem = "?"
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {mem}, Python {platform.python_version()}"
    )


def _verdict(flagged: list[str]) -> str:
    missed = [c for c in PLANTED if c not in flagged]
    false = [c for c in flagged if c not in PLANTED]
    return (
        f"found {len(PLANTED) - len(missed)}/3 planted"
        + (f", missed {missed}" if missed else "")
        + (f", {len(false)} false positive(s) {false}" if false else ", no false positives")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--evidently-python", default="/tmp/evidently-venv/bin/python")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per tool for sizes up to 200,000 rows.")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "REF", "CUR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, ref, cur = args.child
        children = {"mlpilot": child_mlpilot, "mlpilot-tables": child_mlpilot_tables, "evidently": child_evidently}
        result = children[tool](ref, cur)
        print(json.dumps(result))
        return
    if not Path(args.evidently_python).exists():
        raise SystemExit(f"Evidently's Python not found at {args.evidently_python}; see this script's docstring")
    version = subprocess.run(
        [args.evidently_python, "-c", "import evidently; print(evidently.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"# drift: mlpilot.monitor vs Evidently {version}  ({time.strftime('%Y-%m-%d %H:%M %Z')})")
    print(f"# machine: {_machine()}")
    print(f"# data: reference and current of N rows each, 20 numeric + 5 categorical columns, planted {PLANTED}")
    print("# time: the drift check; Evidently's data is loaded before (pandas), mlpilot reads the Parquet files")
    print("#       inside the check, column by column; mlpilot* gets tables loaded before, like Evidently")
    print("# memory: peak RSS of each tool's own process during the check, imports and loaded data included")
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        for rows in args.rows:
            ref, cur = generate(rows, Path(tmp))
            repeat = args.repeat if rows <= 200_000 else 1
            ours = run_children(sys.executable, "mlpilot", ref, cur, repeat)
            tables = run_children(sys.executable, "mlpilot-tables", ref, cur, repeat)
            theirs = run_children(args.evidently_python, "evidently", ref, cur, repeat)
            print(f"\n## {rows:,} rows" + (f" (median time of {repeat} runs each, largest peak)" if repeat > 1 else ""))
            for name, r in (("evidently", theirs), ("mlpilot", ours), ("mlpilot*", tables)):
                print(
                    f"{name:<10} {r['seconds']:8.2f} s   peak {r['peak_mb']:7.0f} MB (RSS before the check: "
                    f"{r['loaded_mb']:.0f} MB)   flagged {r['flagged']}  -> {_verdict(r['flagged'])}"
                )
            if "multivariate_drift" in ours:
                print(f"mlpilot multivariate (PCA) detector flagged joint drift: {ours['multivariate_drift']}")
            print(
                f"ratio      mlpilot is {theirs['seconds'] / ours['seconds']:.1f}x faster, uses "
                f"{ours['peak_mb'] / theirs['peak_mb']:.2f}x Evidently's peak memory "
                f"(mlpilot* on preloaded tables: {theirs['seconds'] / tables['seconds']:.1f}x, "
                f"{tables['peak_mb'] / theirs['peak_mb']:.2f}x)"
            )


if __name__ == "__main__":
    main()
