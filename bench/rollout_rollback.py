"""Time from a rollback decision to 100% of traffic on the stable version, under load.

A real control plane (``mlpilot server``) and a real data plane (``mlpilot deploy serve``, polling every
0.2 s) run in their own processes; this process drives open-loop load at ``--rate`` requests/s. Each round
starts a 50% canary of version 2, waits until the data plane answers with it, then rolls back through the
REST API. The figure per round is the time from the moment the rollback was committed to the start of the
last request the canary still answered (after it, every request went to version 1), plus the failed requests
of the round (goal: <= 1 s and zero).

Run:  .venv/bin/python bench/rollout_rollback.py [--rounds 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from rollout_common import Driver, stack

from mlpilot.deploy import CanaryConfig
from mlpilot.remote.deploy import RestDeployments
from mlpilot.remote.http import HttpTransport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    args = parser.parse_args()
    name = "churn"
    times: list[float] = []
    failed = 0
    total = 0
    with stack(name, poll_interval=args.poll_interval) as s, Driver(s.serve_url, name, rate=args.rate) as load:
        api = RestDeployments(HttpTransport(s.control_url))
        canary = CanaryConfig(steps=[50, 100], min_step_seconds=3600, min_step_requests=10**9)
        time.sleep(1)
        for round_ in range(args.rounds):
            api.start_canary(name, 2, canary=canary, reason=f"bench round {round_}")
            mark = len(load.snapshot())
            while not any(a.variant == "v2" for a in load.snapshot()[mark:]):
                time.sleep(0.01)
            time.sleep(0.5)
            api.rollback(name, reason="bench")
            decided = time.time()
            time.sleep(max(1.5, 4 * args.poll_interval))
            answers = load.snapshot()
            stray = [a.start for a in answers if a.variant == "v2" and a.start >= decided]
            took = (max(stray) - decided) if stray else 0.0
            times.append(took)
            print(f"round {round_ + 1}: canary answered its last request {took * 1000:.0f} ms after the rollback")
        answers = load.snapshot()
        total = len(answers) + load.errors
        failed = load.errors + sum(a.status != 200 for a in answers)
    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, load {args.rate:g} req/s, poll {args.poll_interval} s"
    )
    print(
        f"rollback decision -> 100% on the stable version: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {len(times)} rounds (goal <= 1000 ms)"
    )
    print(f"failed requests: {failed} of {total} across {args.rounds} canary starts and rollbacks (goal 0)")


if __name__ == "__main__":
    main()
