"""Feature store: mlpilot.features vs Feast (DuckDB offline store, SQLite online store), side by side.

Data: 1,000,000 feature rows (10,000 entities x 100 hourly timestamps x 10 float features, TTL 7 days) and
100,000 entity rows, written once as Parquet. Each measurement runs in its own subprocess: Feast with the Python
of its own virtualenv, mlpilot with this one. Each child loads its inputs, times only the operation, and reports
its peak RSS (VmHWM) and the RSS before the operation. The parent checks that both tools produce identical
training-set values (and identical online values for a sample), then prints times, memory and ratios.

Nothing is installed here; create Feast's virtualenv first::

    python3 -m venv /tmp/feast-venv && /tmp/feast-venv/bin/pip install 'feast[duckdb]'

Run:  .venv/bin/python bench/features_vs_feast.py [--feast-python PATH] [--redis-url URL] [--online-runs N]
      [--out results.md]

The online reads (2,000 single-entity and 300 100-entity lookups per run) run ``--online-runs`` times per tool
(default 3), interleaved; the report gives the median of the runs and the range of their p99s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ENTITIES = 10_000
HOURS = 100
FEATURES = [f"f{i}" for i in range(10)]
ENTITY_ROWS = 100_000
START = datetime(2024, 1, 1, tzinfo=UTC)
TTL = timedelta(days=7)
ONLINE_SINGLE = 2_000  # single-entity lookups timed
ONLINE_BATCH = 300  # 100-entity lookups timed


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


def generate(folder: Path, seed: int = 11) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    start = np.datetime64(START.replace(tzinfo=None), "us")
    ids = np.repeat(np.arange(ENTITIES, dtype=np.int64), HOURS)
    hours = np.tile(np.arange(HOURS, dtype=np.int64), ENTITIES)
    columns: dict[str, Any] = {
        "customer_id": ids,
        "event_timestamp": pa.array(start + hours * np.timedelta64(3600, "s"), pa.timestamp("us", tz="UTC")),
    }
    for name in FEATURES:
        columns[name] = rng.random(ENTITIES * HOURS)
    # Row groups of ~128k rows, as DuckDB and Spark write them, so both tools can scan in parallel.
    table = pa.table(columns)
    pq.write_table(table, folder / "features.parquet", row_group_size=131_072)
    # The same rows in time order (as append-only pipelines write them), for an mlpilot-only sensitivity row.
    order = np.lexsort((ids, hours))
    pq.write_table(table.take(order), folder / "features-by-time.parquet", row_group_size=131_072)
    # Entity times spread over the data and up to 9 days past it: some rows hit the 7-day TTL.
    offsets = rng.integers(-3600, (HOURS + 24 * 9) * 3600, ENTITY_ROWS)
    entity = {
        "customer_id": rng.integers(0, ENTITIES + 100, ENTITY_ROWS),  # a few unknown customers
        "event_timestamp": pa.array(start + offsets * np.timedelta64(1, "s"), pa.timestamp("us", tz="UTC")),
        "label": rng.integers(0, 2, ENTITY_ROWS),
    }
    pq.write_table(pa.table(entity), folder / "entities.parquet")


# ---------------------------------------------------------------------------------------------------- workers


def _mlpilot_view(folder: Path, file: str = "features.parquet") -> Any:
    from mlpilot.features import Entity, Feature, FeatureView, ParquetSource

    return FeatureView(
        "stats",
        [Entity("customer", ["customer_id"])],
        ParquetSource(str(folder / file)),
        timestamp_field="event_timestamp",
        ttl=TTL,
        features=[Feature(name, "float64") for name in FEATURES],
    )


def _feast_store(folder: Path, repo: Path) -> Any:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64
    from feast.value_type import ValueType

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        "offline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    source = FileSource(path=str(folder / "features.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(
        name="stats",
        entities=[customer],
        ttl=TTL,
        schema=[Field(name=name, dtype=Float64) for name in FEATURES],
        source=source,
    )
    store.apply([customer, view])
    return store


def _entity_frame(folder: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(folder / "entities.parquet").to_pandas()


def worker_join(tool: str, folder: Path, out: Path, repeats: int) -> dict[str, Any]:
    entity_df = _entity_frame(folder)
    refs = [f"stats:{name}" for name in FEATURES]
    if tool == "feast":
        store = _feast_store(folder, folder / "feast-join")

        def run() -> Any:
            return store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    elif tool.startswith("mlpilot"):
        from mlpilot.features import get_training_set

        view = _mlpilot_view(folder, "features-by-time.parquet" if tool == "mlpilot-by-time" else "features.parquet")
        output = "arrow" if tool == "mlpilot-arrow" else "pandas"
        engine = "duckdb" if tool == "mlpilot-duckdb" else "auto"

        def run() -> Any:
            return get_training_set(entity_df, [view], output=output, engine=engine).data
    else:  # pandas.merge_asof: the bare join, for scale (no TTL bookkeeping, no report)
        import pandas as pd

        features = pd.read_parquet(folder / "features.parquet")

        def run() -> Any:
            left = entity_df.reset_index().sort_values("event_timestamp")
            right = features.sort_values("event_timestamp")
            joined = pd.merge_asof(left, right, on="event_timestamp", by="customer_id", tolerance=pd.Timedelta(TTL))
            return joined.sort_values("index").drop(columns="index")

    before = _rss_mb()
    run()  # one untimed warm-up run per tool: first-call costs (lazy imports, allocator growth) are not the join
    times, cpu = [], []
    result = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert result is not None
    if hasattr(result, "to_parquet"):
        result.to_parquet(out)
    return {"times": times, "cpu": cpu, "rss_before_mb": before, "peak_mb": _peak_rss_mb(), "rows": len(result)}


def worker_materialize(tool: str, folder: Path, out: Path, redis_url: str | None) -> dict[str, Any]:
    end = START + timedelta(hours=HOURS)
    work = folder / f"{tool}-materialize-{uuid.uuid4().hex[:6]}"
    if tool == "feast":
        store = _feast_store(folder, work)
        before = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        store.materialize(START - timedelta(hours=1), end)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "times": [seconds],
            "cpu": [cpu],
            "rss_before_mb": before,
            "peak_mb": _peak_rss_mb(),
            "online": str(work),
        }
    # Time the work, not first-use imports (Feast's happen when its FeatureStore is built, before its clock).
    import duckdb  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from mlpilot.features import materialize, open_online_store

    view = _mlpilot_view(folder)
    url = f"sqlite:///{work / 'online.db'}" if redis_url is None else redis_url
    with open_online_store(url) as store:
        before = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        [result] = materialize([view], end=end, now=end, store=store)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "times": [seconds],
        "cpu": [cpu],
        "rss_before_mb": before,
        "peak_mb": _peak_rss_mb(),
        "rows": result.rows_written,
    }


def worker_online(tool: str, folder: Path, out: Path, redis_url: str | None, online: str) -> dict[str, Any]:
    import random

    rng = random.Random(5)
    refs = [f"stats:{name}" for name in FEATURES]
    singles = [[rng.randrange(ENTITIES)] for _ in range(ONLINE_SINGLE)]
    batches = [rng.sample(range(ENTITIES), 100) for _ in range(ONLINE_BATCH)]
    sample = list(range(0, ENTITIES, 97))
    if tool == "feast":
        from feast import FeatureStore

        store = FeatureStore(repo_path=online)

        def read(ids: list[int]) -> dict[str, list[Any]]:
            rows = [{"customer_id": i} for i in ids]
            return dict(store.get_online_features(features=refs, entity_rows=rows).to_dict())
    elif tool == "mlpilot-lookup":  # what a model server does per request, lookup log included
        from mlpilot.features import FeatureLookup, open_online_store

        mstore = open_online_store(f"sqlite:///{Path(online) / 'online.db'}")
        lookup = FeatureLookup([_mlpilot_view(folder)], store=mstore, log_url=str(out.parent / "lookup-log"))
        now_us = int((START + timedelta(hours=HOURS)).timestamp() * 1_000_000)

        def read(ids: list[int]) -> dict[str, list[Any]]:
            return lookup.lookup({"customer_id": ids}, now_us=now_us)
    else:
        from mlpilot.features import OnlineReader, open_online_store

        url = f"sqlite:///{Path(online) / 'online.db'}" if redis_url is None else redis_url
        mstore = open_online_store(url)
        reader = OnlineReader([_mlpilot_view(folder)], store=mstore)
        now = START + timedelta(hours=HOURS)

        def read(ids: list[int]) -> dict[str, list[Any]]:
            return reader.read({"customer_id": ids}, now=now)

    for ids in singles[:200] + batches[:20]:  # warm-up
        read(ids)

    def percentiles(calls: list[list[int]]) -> tuple[float, float]:
        latencies = []
        for ids in calls:
            t0 = time.perf_counter()
            read(ids)
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000

    p50_1, p99_1 = percentiles(singles)
    p50_100, p99_100 = percentiles(batches)
    result = {
        "p50_1_ms": p50_1,
        "p99_1_ms": p99_1,
        "p50_100_ms": p50_100,
        "p99_100_ms": p99_100,
        "peak_mb": _peak_rss_mb(),
    }
    values = read(sample)
    out.write_text(json.dumps({name: values[name] for name in FEATURES}))
    return result


# ---------------------------------------------------------------------------------------------------- parent


def _run(python: str, args: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.run([python, __file__, "--worker", *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _same_join(mlpilot_path: Path, feast_path: Path) -> tuple[bool, str]:
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(mlpilot_path)
    theirs = pd.read_parquet(feast_path)
    key = ["customer_id", "event_timestamp", "label"]
    ours = ours.sort_values(key, kind="stable").reset_index(drop=True)
    theirs = theirs.sort_values(key, kind="stable").reset_index(drop=True)
    if len(ours) != len(theirs):
        return False, f"row counts differ: {len(ours)} vs {len(theirs)}"
    for column in key:
        if not (ours[column].to_numpy() == theirs[column].to_numpy()).all():
            return False, f"entity column {column} differs after sorting"
    for name in FEATURES:
        a = ours[name].to_numpy(dtype=float)
        b = theirs[name].to_numpy(dtype=float)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            bad = int((~same).sum())
            return False, f"{name}: {bad} values differ (first at row {int(np.argmin(same))})"
    nulls = int(ours[FEATURES[0]].isna().sum())
    return (
        True,
        f"all {len(ours) * len(FEATURES):,} values identical ({nulls:,} null rows: TTL or no history)",
    )


def _same_online(a: Path, b: Path) -> bool:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    return all(left[name] == right[name] for name in FEATURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--redis-url", default=os.environ.get("MLPILOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--online-runs", type=int, default=3, help="runs of each online-read worker (median, range)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, tool, folder, out, *rest = args.worker
        if kind == "join":
            result = worker_join(tool, Path(folder), Path(out), int(rest[0]))
        elif kind == "materialize":
            result = worker_materialize(tool, Path(folder), Path(out), rest[0] or None)
        else:
            result = worker_online(tool, Path(folder), Path(out), rest[0] or None, rest[1])
        print(json.dumps(result))
        return

    if not Path(args.feast_python).exists():
        sys.exit(f"no Feast virtualenv at {args.feast_python}: see this file's docstring")
    me = sys.executable
    prefix = f"bench-features-{uuid.uuid4().hex[:8]}:"
    redis_url = f"{args.redis_url}{'&' if '?' in args.redis_url else '?'}prefix={prefix}"
    with tempfile.TemporaryDirectory(prefix="mlpilot-bench-features-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        generate(folder)
        print(
            f"data: {ENTITIES * HOURS:,} feature rows, {ENTITY_ROWS:,} entity rows ({time.perf_counter() - t0:.1f} s)"
        )
        r = str(args.repeats)
        load_before = os.getloadavg()[0]
        join = {
            "feast": _run(args.feast_python, ["join", "feast", tmp, str(folder / "feast.parquet"), r]),
            "mlpilot": _run(me, ["join", "mlpilot", tmp, str(folder / "mlpilot.parquet"), r]),
            "mlpilot (Arrow output)": _run(me, ["join", "mlpilot-arrow", tmp, "-", r]),
            "mlpilot (DuckDB engine)": _run(me, ["join", "mlpilot-duckdb", tmp, str(folder / "duck.parquet"), r]),
            "mlpilot (time-ordered file)": _run(
                me, ["join", "mlpilot-by-time", tmp, str(folder / "bytime.parquet"), r]
            ),
            "pandas.merge_asof": _run(me, ["join", "pandas", tmp, str(folder / "pandas.parquet"), r]),
        }
        same, detail = _same_join(folder / "mlpilot.parquet", folder / "feast.parquet")
        for label, path in (("DuckDB engine", "duck.parquet"), ("time-ordered file", "bytime.parquet")):
            other_same, other_detail = _same_join(folder / path, folder / "feast.parquet")
            same = same and other_same
            detail += f"; {label}: {'identical' if other_same else other_detail}"
        mat = {
            "feast": _run(args.feast_python, ["materialize", "feast", tmp, "-", ""]),
            "mlpilot (SQLite)": _run(me, ["materialize", "mlpilot", tmp, "-", ""]),
        }
        redis_ok = True
        try:
            mat["mlpilot (Redis)"] = _run(me, ["materialize", "mlpilot", tmp, "-", redis_url])
        except RuntimeError as exc:
            redis_ok = False
            print(f"(Redis skipped: {str(exc).splitlines()[-1]})")
        feast_repo = mat["feast"]["online"]
        mlpilot_repo = next(folder.glob("mlpilot-materialize-*"))
        # The online reads are short and the machine is shared: each tool runs --online-runs times, interleaved,
        # and the report gives the median of the runs and their range.
        online_jobs = {
            "feast (SQLite)": (
                args.feast_python,
                ["online", "feast", tmp, str(folder / "on-feast.json"), "", feast_repo],
            ),
            "mlpilot (SQLite)": (me, ["online", "mlpilot", tmp, str(folder / "on-ml.json"), "", str(mlpilot_repo)]),
            "mlpilot FeatureLookup (SQLite, lookup log on)": (
                me,
                ["online", "mlpilot-lookup", tmp, str(folder / "on-lookup.json"), "", str(mlpilot_repo)],
            ),
        }
        if redis_ok:
            online_jobs["mlpilot (Redis)"] = (
                me,
                ["online", "mlpilot", tmp, str(folder / "on-redis.json"), redis_url, "-"],
            )
        online: dict[str, list[dict[str, Any]]] = {name: [] for name in online_jobs}
        for _ in range(args.online_runs):
            for name, (python, job) in online_jobs.items():
                online[name].append(_run(python, job))
        if redis_ok:
            _drop_redis_prefix(args.redis_url, prefix)
        online_same = all(
            _same_online(folder / f"on-{tool}.json", folder / "on-feast.json")
            for tool in ("ml", "lookup", *(("redis",) if redis_ok else ()))
        )
        loads = (load_before, os.getloadavg()[0])
    report = _report(join, same, detail, mat, online, online_same, args.repeats, loads)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


def _drop_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _report(
    join: dict[str, Any],
    same: bool,
    detail: str,
    mat: dict[str, Any],
    online: dict[str, list[dict[str, Any]]],
    online_same: bool,
    repeats: int,
    loads: tuple[float, float],
) -> str:
    def med(r: dict[str, Any], key: str = "times") -> float:
        return float(statistics.median(r[key]))

    runs = len(next(iter(online.values())))

    lines = [
        f"## Feature store: mlpilot vs Feast ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}. Data: {ENTITIES * HOURS:,} feature rows ({ENTITIES:,} entities x {HOURS} hourly "
        f"timestamps x {len(FEATURES)} float features, TTL 7 days), {ENTITY_ROWS:,} entity rows. Each tool in its "
        "own subprocess; time = median of "
        f"{repeats} runs in one process after one warm-up run (pandas output for both), peak = VmHWM of that process. Load average "
        f"(1 min) at the start and end of the run: {loads[0]:.1f} / {loads[1]:.1f}.",
        "",
        "| training-set join | time (s) | CPU time (s) | peak RSS (MB) | RSS before (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, r in join.items():
        lines.append(f"| {name} | {med(r):.3f} | {med(r, 'cpu'):.3f} | {r['peak_mb']:.0f} | {r['rss_before_mb']:.0f} |")
    f, m = join["feast"], join["mlpilot"]
    lines += [
        "",
        f"Join: mlpilot **{med(f) / med(m):.1f}x faster** than Feast ({med(f, 'cpu') / med(m, 'cpu'):.1f}x less "
        f"CPU time), peak memory "
        f"**{m['peak_mb'] / f['peak_mb']:.2f}x** Feast's; values identical: **{same}** ({detail}).",
        "",
        "| materialization (all history) | time (s) | CPU time (s) | peak RSS (MB) |",
        "|---|---|---|---|",
    ]
    for name, r in mat.items():
        lines.append(f"| {name} | {med(r):.3f} | {med(r, 'cpu'):.3f} | {r['peak_mb']:.0f} |")
    fm, mm = mat["feast"], mat["mlpilot (SQLite)"]
    lines += [
        "",
        f"Materialization: mlpilot (SQLite) **{med(fm) / med(mm):.1f}x faster** "
        f"({med(fm, 'cpu') / med(mm, 'cpu'):.1f}x less CPU time).",
        "",
        f"| online read (in-process), median of {runs} runs | p50 / p99, 1 entity (ms) | "
        "p50 / p99, 100 entities (ms) | p99 range over runs, 1 / 100 entities (ms) |",
        "|---|---|---|---|",
    ]

    def mid(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in online[name]))

    def spread(name: str, key: str) -> str:
        values = [r[key] for r in online[name]]
        return f"{min(values):.3f}-{max(values):.3f}"

    for name in online:
        lines.append(
            f"| {name} | {mid(name, 'p50_1_ms'):.3f} / {mid(name, 'p99_1_ms'):.3f} | "
            f"{mid(name, 'p50_100_ms'):.3f} / {mid(name, 'p99_100_ms'):.3f} | "
            f"{spread(name, 'p99_1_ms')} / {spread(name, 'p99_100_ms')} |"
        )
    fo, mo = "feast (SQLite)", "mlpilot (SQLite)"

    def goal(key: str, limit: float) -> str:
        values = [r[key] for r in online[mo]]
        met = sum(v <= limit for v in values)
        verdict = "met" if met == len(values) else "not met" if met == 0 else f"met in {met} of {len(values)} runs"
        return f"median {mid(mo, key):.3f} ms, range {spread(mo, key)}: **{verdict}**"

    lines += [
        "",
        f"Online p99 (medians of runs): mlpilot (SQLite) {mid(fo, 'p99_1_ms') / mid(mo, 'p99_1_ms'):.1f}x faster "
        f"than Feast for 1 entity, {mid(fo, 'p99_100_ms') / mid(mo, 'p99_100_ms'):.1f}x for 100; sampled online "
        f"values identical to Feast's: **{online_same}**.",
        f"Goal p99 <= 0.2 ms for 1 entity (mlpilot, SQLite): {goal('p99_1_ms', 0.2)}. "
        f"Goal p99 <= 2 ms for 100 entities: {goal('p99_100_ms', 2.0)}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
