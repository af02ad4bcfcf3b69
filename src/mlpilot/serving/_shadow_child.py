"""Entry point of the shadow lane's worker process (``python -m mlpilot.serving._shadow_child RECV SEND NICE
THREADS``), started by :class:`mlpilot.serving.shadow_process.ShadowProcess`; not a command for people."""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str]) -> int:
    recv, send, nice, threads = (int(a) for a in argv)
    if nice and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError as exc:
            print(f"shadow worker: keeps the server's CPU priority: {exc}", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="shadow worker %(process)d: %(levelname)s %(message)s")
    from mlpilot.serving.model import limit_thread_pools
    from mlpilot.serving.shadow_process import serve_worker

    limit_thread_pools(threads)
    return serve_worker(recv, send)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
