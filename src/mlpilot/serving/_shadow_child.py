"""Entry point of the shadow lane's worker process (``python -m mlpilot.serving._shadow_child RECV SEND NICE
THREADS``), started by :class:`mlpilot.serving.shadow_process.ShadowProcess`; not a command for people."""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str]) -> int:
    recv, send, nice, threads = (int(a) for a in argv)
    try:
        if nice and hasattr(os, "nice"):
            os.nice(nice)
        if nice >= 19 and hasattr(os, "SCHED_IDLE"):
            # Linux's idle class: any other task that wakes up takes the core at once (a nice level only
            # shrinks its share), so the worker runs on cores live work does not want.
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        print(f"shadow worker: keeps the server's CPU priority: {exc}", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="shadow worker %(process)d: %(levelname)s %(message)s")
    from mlpilot.serving.model import limit_thread_pools
    from mlpilot.serving.shadow_process import serve_worker

    limit_thread_pools(threads)
    return serve_worker(recv, send)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
