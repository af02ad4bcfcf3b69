"""What the traffic router adds to the response path, measured in process (no network, no noise from
other processes' scheduling beyond this one): a minimal ASGI app answering a /v1 prediction, called directly,
then behind the router (hashing, path rewrite, statistics), then behind the router with every request mirrored
to a shadow. The time measured is until the caller's response body is sent: the shadow's own work happens
after. Best of ``--repeats`` runs of ``--requests`` calls each.

Run:  .venv/bin/python bench/rollout_router_overhead.py [--requests 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from mlpilot.deploy import RouteTable, Variant
from mlpilot.deploy.router import TrafficRouter

BODY = orjson.dumps({"instances": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]})
ANSWER = orjson.dumps({"model": "churn", "version": 1, "request_id": "x", "predictions": [1]})


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": ANSWER})


async def run(target: Any, n: int) -> float:
    """Seconds per request until the response body went out."""
    done = 0.0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal done
        if message["type"] == "http.response.body":
            done = time.perf_counter()

    total = 0.0
    for i in range(n):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/models/churn:predict",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"x-request-id", f"r{i}".encode())],
        }
        start = time.perf_counter()
        await target(scope, receive, send)
        total += done - start
        if i % 256 == 0:
            await asyncio.sleep(0)  # let mirrored requests finish, as the event loop would between requests
    return total / n


async def main_async(n: int, repeats: int) -> None:
    primary = [Variant(version=1, role="primary", weight=90), Variant(version=2, role="canary", weight=10)]
    routed = TrafficRouter(app)
    routed.set_table(RouteTable.build("churn", primary))
    shadowed = TrafficRouter(app, max_shadow_in_flight=10**6)
    shadowed.set_table(RouteTable.build("churn", [*primary, Variant(version=3, role="shadow", weight=100)]))
    results = {}
    for label, target in (("direct", app), ("router", routed), ("router + 100% shadow", shadowed)):
        results[label] = min([await run(target, n) for _ in range(repeats)])
        await asyncio.sleep(0.1)
    base = results["direct"]
    for label, seconds in results.items():
        print(f"{label:>22}: {seconds * 1e6:7.1f} us per request (added {(seconds - base) * 1e6:+6.1f} us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.repeats))


if __name__ == "__main__":
    main()
