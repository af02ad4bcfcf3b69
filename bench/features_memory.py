"""Feature store memory: peak RSS of the DuckDB training-set join and materialization as the data grows.

The offline store promises bounded memory: DuckDB runs within ``memory_limit`` (``MLPILOT_FEATURES_MEMORY_LIMIT``)
and spills to disk past it, and materialization writes Arrow record batches, so peak RSS should stay roughly
flat as feature rows grow, under the limit plus the interpreter's own baseline. This measures it.

Data: for each size N (default 1M, 4M, 16M feature rows), N rows of 8 float features over N/100 entities and
one year, written as Parquet by DuckDB in a separate process; 200,000 entity rows. Each measurement runs in a
fresh subprocess that imports mlpilot, reads its RSS, runs one operation with ``engine="duckdb"`` and the
given limit, and exits; its peak RSS is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a small
intermediate process whose only child it was. The parent prints a Markdown table.

Run:  .venv/bin/python bench/features_memory.py [--sizes 1000000,4000000,16000000] [--limits 256MB,2GB]
      [--workdir DIR] [--out results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

FEATURES = [f"f{j}" for j in range(8)]
ENTITY_ROWS = 200_000
NOW = datetime(2025, 2, 1)


def generate(folder: Path, rows: int) -> None:
    """``rows`` feature rows in Parquet parts of at most 2M rows (run in its own process: not measured)."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    keys = max(rows // 100, 1)
    values = ", ".join(f"(hash(i * {j + 11}) % 1000000)::DOUBLE / 7.0 AS {name}" for j, name in enumerate(FEATURES))
    part = 2_000_000
    with duckdb.connect(config={"memory_limit": "1GB"}) as con:
        for n, start in enumerate(range(0, rows, part)):
            stop = min(start + part, rows)
            con.execute(
                f"COPY (SELECT (hash(i) % {keys})::BIGINT AS cid, "
                f"TIMESTAMP '2024-01-01' + to_microseconds((hash(i * 7 + 1) % 31536000000000)::BIGINT) AS et, "
                f"{values} FROM range({start}, {stop}) t(i)) "
                f"TO '{folder}/part-{n:03d}.parquet' (FORMAT parquet, ROW_GROUP_SIZE 122880)"
            )


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(op: str, folder: Path, limit: str, work: Path) -> dict[str, Any]:
    """One measured operation in this (fresh) process."""
    import numpy as np
    import pyarrow as pa

    from mlpilot.features import Entity, Feature, FeatureView, ParquetSource, get_training_set, materialize

    rows = sum(pq_rows(f) for f in sorted(folder.glob("*.parquet")))
    view = FeatureView(
        "big",
        [Entity("c", ["cid"])],
        ParquetSource(str(folder / "*.parquet")),
        "et",
        features=[Feature(name, "float64") for name in FEATURES],
    )
    rng = np.random.default_rng(7)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    entity_df = pa.table(
        {
            "cid": rng.integers(0, max(rows // 100, 1), ENTITY_ROWS),
            "event_timestamp": start + rng.integers(0, 370 * 86400, ENTITY_ROWS).astype("timedelta64[s]"),
        }
    )
    before = rss_mb()
    began = time.perf_counter()
    spill = work / "spill"
    if op == "join":
        result = get_training_set(entity_df, [view], engine="duckdb", memory_limit=limit, temp_directory=spill)
        out = result.data.num_rows
    else:
        store = work / f"online-{os.getpid()}.db"
        [done] = materialize(
            [view], store=f"sqlite:///{store}", engine="duckdb", memory_limit=limit, temp_directory=spill, now=NOW
        )
        out = done.rows_written
        store.unlink()
    return {"seconds": time.perf_counter() - began, "rss_before_mb": before, "output_rows": out, "rows": rows}


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def measure(op: str, folder: Path, limit: str, work: Path) -> dict[str, Any]:
    """Run ``op`` in a child of a fresh intermediate process, which reports its only child's ``ru_maxrss``."""
    cmd = [sys.executable, __file__, "--measure", op, str(folder), limit, str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def run_child(op: str, folder: str, limit: str, work: str) -> None:
    """The intermediate process: one child, then that child's peak RSS from ``getrusage(RUSAGE_CHILDREN)``."""
    cmd = [sys.executable, __file__, "--child", op, folder, limit, work]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    found["maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,4000000,16000000")
    parser.add_argument("--limits", default="256MB,2GB")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=4, metavar=("OP", "FOLDER", "LIMIT", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=4, metavar=("OP", "FOLDER", "LIMIT", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        run_child(*args.measure)
        return
    if args.child:
        op, folder, limit, work = args.child
        if op == "generate":
            generate(Path(folder), int(limit))
            return
        print(json.dumps(child(op, Path(folder), limit, Path(work))))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mlpilot-bench-mem-"))
    sizes = [int(s) for s in args.sizes.split(",")]
    limits = args.limits.split(",")
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}. {ENTITY_ROWS:,} entity rows; 8 float features; entities = rows / 100. "
        f"Load average at start: {os.getloadavg()[0]:.1f}.",
        "",
        "| feature rows | Parquet (MB) | memory_limit | operation | time (s) | RSS before (MB) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        folder = work / f"rows-{size}"
        if not folder.exists():  # generated in its own process, not measured
            subprocess.run([sys.executable, __file__, "--child", "generate", str(folder), str(size), "-"], check=True)
        parquet_mb = sum(f.stat().st_size for f in folder.glob("*.parquet")) / 1e6
        for limit in limits:
            for op in ("join", "materialize"):
                found = measure(op, folder, limit, work)
                if "error" in found:
                    row = f"| {size:,} | {parquet_mb:.0f} | {limit} | {op} | failed: {found['error'][:80]} | | |"
                else:
                    row = (
                        f"| {size:,} | {parquet_mb:.0f} | {limit} | {op} | {found['seconds']:.1f} | "
                        f"{found['rss_before_mb']:.0f} | {found['maxrss_mb']:.0f} |"
                    )
                print(row, flush=True)
                lines.append(row)
    lines.append("")
    lines.append(f"Load average at end: {os.getloadavg()[0]:.1f}.")
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
