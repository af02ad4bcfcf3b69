"""Added latency of shadowing: callers' p50/p99 with and without every request mirrored to a shadow.

A real control plane and a real data plane (``mlpilot deploy serve``) run in their own processes; this process
drives open-loop load at ``--rate`` requests/s and alternates phases without and with a 100% shadow of
version 2 (same model size), ``--phases`` times each, ``--seconds`` each, discarding the first second after
every switch. The shadow runs after the caller has its answer, so the added p99 is what the extra work on the
same cores costs (goal <= 1 ms).

Run:  .venv/bin/python bench/rollout_shadow.py [--rate 200] [--seconds 8] [--phases 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from rollout_common import Driver, stack

from mlpilot.remote.deploy import RestDeployments
from mlpilot.remote.http import HttpTransport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="the data plane's inference threads (0: cores - 1)")
    args = parser.parse_args()
    name = "churn"
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    mirrored = 0
    with stack(name, threads=args.threads) as s, Driver(s.serve_url, name, rate=args.rate) as load:
        api = RestDeployments(HttpTransport(s.control_url))
        time.sleep(2)
        for phase in range(2 * args.phases):
            shadowing = phase % 2 == 1
            if shadowing:
                api.start_shadow(name, 2, mirror=100, reason="bench")
            elif phase:
                api.rollback(name, reason="bench")
            time.sleep(1.0)
            start = time.time()
            time.sleep(args.seconds)
            window = [a for a in load.snapshot() if a.start >= start and a.status == 200]
            ms = np.array([(a.end - a.start) * 1000 for a in window])
            p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
            results[shadowing].append((p50, p99))
            if shadowing:
                mirrored += api.analyze(name).shadow["mirrored"]  # type: ignore[index]
            print(
                f"phase {phase + 1} shadow={'on ' if shadowing else 'off'}: {len(window)} requests, "
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
            )
        errors = load.errors + sum(a.status != 200 for a in load.snapshot())
    off50 = statistics.mean(p for p, _ in results[False])
    on50 = statistics.mean(p for p, _ in results[True])
    off99 = statistics.mean(p for _, p in results[False])
    on99 = statistics.mean(p for _, p in results[True])
    print()
    print(f"machine: {platform.processor() or platform.machine()}, load {args.rate:g} req/s, threads {args.threads}")
    print(f"p50: {off50:.2f} ms without shadow, {on50:.2f} ms with (added {on50 - off50:+.2f} ms)")
    print(f"p99: {off99:.2f} ms without shadow, {on99:.2f} ms with (added {on99 - off99:+.2f} ms; goal <= 1 ms)")
    pairs = [on[1] - off[1] for off, on in zip(results[False], results[True], strict=True)]
    print(
        f"p99 added, median of {len(pairs)} paired phases: {statistics.median(pairs):+.2f} ms "
        f"(spread {min(pairs):+.2f} .. {max(pairs):+.2f} ms: the machine's noise)"
    )
    print(f"mirrored requests reported: {mirrored}; failed requests: {errors}")


if __name__ == "__main__":
    main()
