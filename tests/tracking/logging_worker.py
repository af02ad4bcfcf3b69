"""A training-like process for the subprocess tests: logs to a store given on the command line.

    python logging_worker.py DB_URL ARTIFACT_DIR MODE POINTS [FLUSH_INTERVAL] [MAX_BATCH] [START_GATE]

Modes: ``with`` (context manager), ``atexit`` (never ends the run: the exit hook must), ``crash`` (an uncaught
exception after logging), ``forever`` (logs until killed). The worker prints its run id first. Point ``i`` has
key ``k<i % 2>``, step ``i // 2`` and value ``i``, so a reader can check order and completeness. With
START_GATE, the worker waits for that file to exist before logging, so that several workers log at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.store import Store
from mlpilot.tracking import TrackingService, start_run


def main() -> None:
    db_url, artifact_dir, mode, points = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    flush_interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
    max_batch = int(sys.argv[6]) if len(sys.argv) > 6 else 10_000
    gate = Path(sys.argv[7]) if len(sys.argv) > 7 else None
    backend = TrackingService(Store(db_url))
    run = start_run(
        backend,
        FsspecArtifactStore(artifact_dir),
        experiment="workers",
        name=f"{mode}-worker",
        flush_interval=flush_interval,
        max_batch=max_batch,
    )
    print(run.id, flush=True)
    while gate is not None and not gate.exists():
        time.sleep(0.005)
    run.log_params({"mode": mode, "points": points})
    i = 0
    while mode == "forever" or i < points:
        run.log_metric(f"k{i % 2}", float(i), step=i // 2)
        i += 1
    if mode == "with":
        run.end()
    elif mode == "crash":
        raise RuntimeError("training diverged")


if __name__ == "__main__":
    main()
