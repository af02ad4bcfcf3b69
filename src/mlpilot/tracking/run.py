"""The run handle: ``start_run`` returns an :class:`ActiveRun` that logs through a background writer.

>>> from mlpilot.store import Store
>>> from mlpilot.artifacts import FsspecArtifactStore
>>> from mlpilot.tracking import TrackingService
>>> import tempfile
>>> home = tempfile.mkdtemp()
>>> backend = TrackingService(Store(f"sqlite:///{home}/mlpilot.db"))
>>> artifacts = FsspecArtifactStore(f"{home}/artifacts")
>>> with start_run(backend, artifacts, experiment="churn", tags={"team": "growth"}) as run:
...     run.log_params({"max_depth": 6, "lr": 0.1})
...     for step in range(3):
...         run.log_metric("loss", 1.0 / (step + 1), step=step)
>>> backend.get_run(run.id).info.status
<RunStatus.FINISHED: 'FINISHED'>

A run that leaves its ``with`` block by an exception is marked FAILED (KILLED for Ctrl-C), otherwise FINISHED;
both flush first. Runs still open when the interpreter exits are flushed and ended by an ``atexit`` hook.
Runs started with ``nested=True`` take the innermost active run of the current context as their parent.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlpilot.artifacts import ArtifactStore, safe_name
from mlpilot.errors import ConflictError, InvalidInputError, MlpilotError, NotFoundError
from mlpilot.tracking.backend import TrackingBackend
from mlpilot.tracking.datasets import describe_dataset
from mlpilot.tracking.environment import code_folder, current_user, entry_point, git_info, python_environment
from mlpilot.tracking.models import ArtifactRef, DatasetInfo, RunInfo, RunSpec, RunStatus
from mlpilot.tracking.service import MAX_KEY_LENGTH, MAX_PARAM_LENGTH
from mlpilot.tracking.writer import BackgroundWriter, MetricRow, WriterError

__all__ = ["DEFAULT_EXPERIMENT", "ActiveRun", "active_run", "start_run"]

DEFAULT_EXPERIMENT = "default"

_stack: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar("mlpilot_active_runs", default=())
# Strong references: a run the user forgot to end (or dropped) must still be flushed and ended at exit.
_live: dict[int, ActiveRun] = {}
_live_lock = threading.Lock()


def active_run() -> ActiveRun | None:
    """The innermost run started in this context and not yet ended."""
    for run in reversed(_stack.get()):
        if not run.ended:
            return run
    return None


def _bad_key(key: object, what: str) -> InvalidInputError:
    return InvalidInputError(
        f"{what} key must be a non-empty string of at most {MAX_KEY_LENGTH} characters, got {str(key)[:80]!r}",
        field=what,
    )


class ActiveRun:
    """A started run. Logging calls return at once; the data reaches the backend in the background.

    Use it as a context manager, or call :meth:`end` yourself.
    """

    def __init__(
        self,
        backend: TrackingBackend,
        artifacts: ArtifactStore,
        info: RunInfo,
        *,
        flush_interval: float = 0.5,
        max_batch: int = 10_000,
        actor: str = "local",
    ) -> None:
        self.backend = backend
        self.artifacts = artifacts
        self.actor = actor
        self._info = info
        self._next_step: dict[str, int] = {}
        self._params: dict[str, str] = {}
        self._ended = False
        self._end_lock = threading.Lock()
        self._writer = BackgroundWriter(
            backend, info.id, flush_interval=flush_interval, max_batch=max_batch, actor=actor
        )

    # -- identity --------------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def info(self) -> RunInfo:
        """The run's attributes as of its start (or its end, once ended)."""
        return self._info

    @property
    def ended(self) -> bool:
        return self._ended

    def __repr__(self) -> str:
        return f"<ActiveRun {self._info.name!r} id={self.id} experiment={self._info.experiment!r}>"

    def _check_open(self) -> None:
        if self._ended:
            raise ConflictError(f"run {self.id} has ended; start a new run to log more", field="run_id")

    # -- logging ---------------------------------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        """Queue one point; ``step`` defaults to the key's last step + 1 (0 first), ``timestamp`` is in ms."""
        if self._ended:
            self._check_open()
        next_step = self._next_step.get(key)
        if next_step is None:
            if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
                raise _bad_key(key, "metric")
            next_step = 0
        if type(value) is not float:
            if isinstance(value, str) or not hasattr(value, "__float__"):
                raise InvalidInputError(f"metric {key!r}: value must be a number, got {value!r}", field="value")
            value = float(value)
        if step is None:
            step = next_step
        elif type(step) is not int:
            step = self._as_int(step, "step")
        self._next_step[key] = step + 1
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        elif type(timestamp) is not int:
            timestamp = self._as_int(timestamp, "timestamp")
        self._writer.add_metric(key, value, step, timestamp)

    @staticmethod
    def _as_int(value: Any, what: str) -> int:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise InvalidInputError(f"{what} must be an integer, got {value!r}", field=what)
        return int(value.__index__())

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
        """Queue one point per key, all at the same step and time."""
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        for key, value in metrics.items():
            self.log_metric(key, value, step=step, timestamp=timestamp)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Queue params (stored as text; numbers also get a numeric view for search); write-once."""
        self._check_open()
        clean: dict[str, str] = {}
        for key, value in params.items():
            if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
                raise _bad_key(key, "param")
            text = value if isinstance(value, str) else str(value)
            if len(text) > MAX_PARAM_LENGTH:
                raise InvalidInputError(
                    f"param {key!r}: value is longer than {MAX_PARAM_LENGTH} characters", field="param"
                )
            old = self._params.get(key)
            if old is not None and old != text:
                raise ConflictError(
                    f"param {key!r} is already {old!r}; params are write-once (got {text!r})", field="param"
                )
            clean[key] = text
        self._params.update(clean)
        self._writer.add_params(clean)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Queue tags; a tag set again takes the new value."""
        self._check_open()
        clean: dict[str, str] = {}
        for key, value in tags.items():
            if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
                raise _bad_key(key, "tag")
            clean[key] = value if isinstance(value, str) else str(value)
        self._writer.add_tags(clean)

    def log_dataset(
        self,
        data: Any,
        *,
        name: str,
        context: str = "train",
        source: str | None = None,
        leakage_report: Any = None,
    ) -> DatasetInfo:
        """Record a dataset input (pandas, polars, pyarrow, NumPy): content hash, schema and row count.

        A leakage report the data carries (a training set as Arrow or pandas, or the ``TrainingSet`` itself:
        polars frames carry no metadata) is stored with this run's input; ``leakage_report=`` passes one
        explicitly. It never changes the digest.
        """
        self._check_open()
        info = describe_dataset(data, name=name, source=source, leakage_report=leakage_report)
        self.backend.log_dataset(self.id, info, context=context, actor=self.actor)
        return info

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> ArtifactRef:
        """Store a file's bytes in the artifact store, attached to the run as ``name`` (default: its name)."""
        self._check_open()
        file = Path(path)
        if file.is_dir():
            raise InvalidInputError(f"{file} is a folder; use log_artifacts() for folders", field="path")
        if not file.is_file():
            raise NotFoundError(f"no such file: {file}", field="path")
        logical = safe_name(name if name is not None else file.name)
        digest = self.artifacts.put_file(file)
        ref = ArtifactRef(path=logical, sha256=digest, size=file.stat().st_size)
        self.backend.log_artifact(self.id, ref, actor=self.actor)
        return ref

    def log_artifacts(self, folder: str | os.PathLike[str], name: str | None = None) -> list[ArtifactRef]:
        """Log every file under ``folder``, named ``<name or folder name>/<relative path>``."""
        root = Path(folder)
        if not root.is_dir():
            raise NotFoundError(f"no such folder: {root}", field="path")
        prefix = safe_name(name if name is not None else root.name)
        return [
            self.log_artifact(file, f"{prefix}/{file.relative_to(root).as_posix()}")
            for file in sorted(root.rglob("*"))
            if file.is_file()
        ]

    def flush(self) -> None:
        """Block until everything logged so far is durable in the backend."""
        self._writer.flush()

    # -- ending ----------------------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> RunInfo:
        """Flush, then mark the run ``status``: its last points and its status commit together.

        If any batch could not be written, the run is marked FAILED and the WriterError is raised. Idempotent.
        """
        with self._end_lock:
            if self._ended:
                return self._info
            self._ended = True

        def finish(metrics: list[MetricRow], params: dict[str, str], tags: dict[str, str]) -> RunInfo:
            return self.backend.end_run(self.id, status, metrics=metrics, params=params, tags=tags, actor=self.actor)

        try:
            info = self._writer.close(finish)
            assert info is not None
            self._info = info
        except WriterError:
            # Best effort (the run may have been ended elsewhere): the WriterError says what was lost.
            with contextlib.suppress(MlpilotError):
                self._info = self.backend.end_run(self.id, RunStatus.FAILED, actor=self.actor)
            raise
        finally:
            _forget(self)
        return self._info

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED)
        else:
            self.end(RunStatus.FAILED)


def _forget(run: ActiveRun) -> None:
    with _live_lock:
        _live.pop(id(run), None)
    stack = _stack.get()
    if run in stack:
        _stack.set(tuple(r for r in stack if r is not run))


def _parent_id(parent: str | ActiveRun | None, nested: bool) -> str | None:
    if isinstance(parent, ActiveRun):
        return parent.id
    if parent is not None:
        return parent
    if nested:
        current = active_run()
        return current.id if current is not None else None
    return None


def start_run(
    backend: TrackingBackend,
    artifacts: ArtifactStore,
    *,
    experiment: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    parent: str | ActiveRun | None = None,
    flush_interval: float = 0.5,
    max_batch: int = 10_000,
    capture_environment: bool = True,
    actor: str = "local",
) -> ActiveRun:
    """Start a run in ``experiment`` (created if missing; default ``"default"``) and return its handle.

    ``nested=True`` makes the innermost active run its parent; ``parent`` names one explicitly. With
    ``capture_environment`` the run records the git commit and dirty flag of the running code (when in a git
    work tree), the user, the entry script, Python, the platform and the installed packages.
    """
    spec: dict[str, Any] = {
        "experiment": experiment or DEFAULT_EXPERIMENT,
        "name": name,
        "parent_id": _parent_id(parent, nested),
        "tags": {str(k): v if isinstance(v, str) else str(v) for k, v in (tags or {}).items()},
    }
    if capture_environment:
        git = git_info(code_folder())
        spec.update(
            user=current_user(),
            source=entry_point(),
            git_commit=git.commit if git else None,
            git_dirty=git.dirty if git else None,
            environment=python_environment(),
        )
    info = backend.create_run(RunSpec(**spec), actor=actor)
    run = ActiveRun(backend, artifacts, info, flush_interval=flush_interval, max_batch=max_batch, actor=actor)
    with _live_lock:
        _live[id(run)] = run
    _stack.set((*_stack.get(), run))
    return run


def _end_open_runs_at_exit() -> None:
    """Flush and end runs still open at exit: FAILED after an uncaught exception, else FINISHED."""
    crashed = getattr(sys, "last_value", None) is not None
    with _live_lock:
        runs = list(_live.values())
    for run in runs:
        try:
            run.end(RunStatus.FAILED if crashed else RunStatus.FINISHED)
        except Exception as exc:  # reported, not raised: nothing can catch an error raised from atexit
            print(f"mlpilot: could not end run {run.id} at exit: {exc}", file=sys.stderr)


atexit.register(_end_open_runs_at_exit)
