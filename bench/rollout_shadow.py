"""Added latency of shadowing: callers' p50/p99 with and without every request mirrored to a shadow.

A real control plane and a real data plane (``mlpilot deploy serve``, default inference threads unless
``--threads``) run in their own processes; this process drives open-loop load at ``--rate`` requests/s. Phases
without and with a 100% shadow of version 2 (a model of the same size) alternate in pairs, ``--pairs`` times,
``--seconds`` each. Pairs run in ABBA order (off/on, on/off, off/on, ...) so that a slow drift of the machine
cancels out, and each phase starts only once the data plane serves the new configuration, plus one second. The
figure is the median over pairs of (p99 with shadow - p99 without), with the spread of the pairs: on a shared
machine the noise of identical phases is of the same order, so the spread says how far to trust the median.
The shadow report's mirrored and skipped counts show how much of the shadow work ran.

Run:  .venv/bin/python bench/rollout_shadow.py [--rate 200] [--seconds 5] [--pairs 8] [--threads 0]
                                             [--model logistic|boosted] [--shadow KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import httpx
import numpy as np
from rollout_common import Driver, stack

from mlpilot.remote.deploy import RestDeployments
from mlpilot.remote.http import HttpTransport


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (the shadow worker), from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                total += sum(_cpu_seconds(int(child)) for child in f.read().split())
    except (OSError, IndexError, ValueError):
        pass
    return total


def _wait_serving(url: str, name: str, versions: set[int], timeout: float = 30.0) -> None:
    """Until the data plane has loaded exactly ``versions`` of ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = httpx.get(f"{url}/v1/models", timeout=5).json()["models"]
        if any(m["name"] == name and set(m["versions"]) == versions for m in models):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the data plane did not switch to versions {sorted(versions)} within {timeout} s")


def _wait_shadow_loaded(url: str, timeout: float = 120.0) -> None:
    """Until the data plane's shadow worker process has loaded the candidate (it does on the first mirrors):
    the phase measures shadowing, not the one-off start of the worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
            if line.startswith("mlpilot_serve_shadow_process_versions ") and float(line.split()[1]) >= 1:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the shadow worker did not load the candidate within {timeout} s")


def _quantiles(load: Driver, start: float, end: float) -> tuple[int, float, float]:
    window = [a for a in load.snapshot() if start <= a.start < end and a.status == 200]
    ms = np.array([(a.end - a.start) * 1000 for a in window])
    return len(window), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="the data plane's inference threads (0: cores - 1)")
    parser.add_argument(
        "--model",
        choices=["logistic", "boosted"],
        default="logistic",
        help="logistic regression (~0.1 ms a call) or gradient-boosted trees (~2 ms a call)",
    )
    parser.add_argument(
        "--shadow",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a shadow-lane setting of the data plane (mlpilot deploy serve --shadow), repeatable",
    )
    args = parser.parse_args()
    name = "churn"
    serve_options = [item for setting in args.shadow for item in ("--shadow", setting)]
    pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []  # ((p50, p99) off, (p50, p99) on)
    mirrored = skipped = requests = 0
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    load_before = os.getloadavg()
    with (
        stack(name, threads=args.threads, model=args.model, serve_options=serve_options) as s,
        Driver(s.serve_url, name, rate=args.rate) as load,
    ):
        api = RestDeployments(HttpTransport(s.control_url))
        time.sleep(2)
        shadowing = False
        for pair in range(args.pairs):
            order = [False, True] if pair % 2 == 0 else [True, False]
            figures: dict[bool, tuple[float, float]] = {}
            for want in order:
                if want and not shadowing:
                    api.start_shadow(name, 2, mirror=100, skip_gate=True, reason="bench")
                    _wait_serving(s.serve_url, name, {1, 2})
                    if "isolation=thread" not in args.shadow:
                        _wait_shadow_loaded(s.serve_url)
                elif not want and shadowing:
                    mirrored_now = api.analyze(name).shadow or {}
                    mirrored += int(mirrored_now.get("mirrored", 0))
                    skipped += int(mirrored_now.get("skipped", 0))
                    api.rollback(name, reason="bench")
                    _wait_serving(s.serve_url, name, {1})
                shadowing = want
                time.sleep(1.0)
                start = time.time()
                cpu_before = _cpu_seconds(s.procs[1].pid)
                time.sleep(args.seconds)
                cpu = (_cpu_seconds(s.procs[1].pid) - cpu_before) / (time.time() - start)
                n, p50, p99 = _quantiles(load, start, time.time())
                requests += n
                figures[want] = (p50, p99)
                (cpu_on if want else cpu_off).append(cpu)
                print(
                    f"pair {pair + 1} shadow={'on ' if want else 'off'}: {n} requests, p50 {p50:.2f} ms, "
                    f"p99 {p99:.2f} ms, data plane CPU {cpu * 100:.0f}% of a core"
                )
            pairs.append((figures[False], figures[True]))
        if shadowing:
            time.sleep(1.5)  # the last report of the data plane
            report = api.analyze(name).shadow or {}
            mirrored += int(report.get("mirrored", 0))
            skipped += int(report.get("skipped", 0))
        errors = load.errors + sum(a.status != 200 for a in load.snapshot())
    load_after = os.getloadavg()
    d99 = [on[1] - off[1] for off, on in pairs]
    d50 = [on[0] - off[0] for off, on in pairs]
    off99 = statistics.median(off[1] for off, _ in pairs)
    on99 = statistics.median(on[1] for _, on in pairs)
    print()
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}")
    print(
        f"machine: {_cpu()}, {os.cpu_count()} cores, python {platform.python_version()}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)"
    )
    print(f"model: {args.model}, version 2 shadowing version 1 (same size)")
    print(f"shadow lane: {', '.join(args.shadow) or 'defaults'}")
    print(
        f"load: {args.rate:g} req/s open loop, {args.pairs} pairs of {args.seconds:g} s, threads {args.threads or 'default'}"
    )
    print(f"p99 median over phases: {off99:.2f} ms without shadow, {on99:.2f} ms with")
    print(
        f"p99 added, median of {len(d99)} paired phases: {statistics.median(d99):+.2f} ms "
        f"(spread {min(d99):+.2f} .. {max(d99):+.2f} ms; goal <= 1 ms)"
    )
    print(f"p50 added, median of {len(d50)} paired phases: {statistics.median(d50):+.2f} ms")
    print(
        f"data plane CPU (with its shadow worker), median: {statistics.median(cpu_off) * 100:.0f}% of a core "
        f"without shadow, {statistics.median(cpu_on) * 100:.0f}% with"
    )
    print(f"requests measured: {requests}; failed: {errors}; mirrored and run: {mirrored}; skipped: {skipped}")


if __name__ == "__main__":
    main()
