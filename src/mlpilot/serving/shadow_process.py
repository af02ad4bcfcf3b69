"""The shadow lane's worker process: candidate models run outside the server, so shadow work shares neither its
GIL nor its event loop.

A shadow model that runs in a thread of the server holds the GIL while it computes (scikit-learn's trees, the
Python parts of any flavor), and every live request that arrives meanwhile waits for it between its own steps.
In a process of its own, at the lowest CPU priority, it only competes for the cores, where the scheduler lets
live work go first. The server keeps a thin proxy: one thread that writes a batch to a pipe and blocks on the
answer without the GIL.

Nothing crosses the pipe that could run code when read:

- messages are a JSON header plus, for batches, an Arrow IPC stream of the columns (and of the outputs back);
- the worker loads a version from the archive the server fetched for it (:meth:`RegistrySource.export
  <mlpilot.serving.RegistrySource.export>`), checking its SHA-256 against the registry's before reading it
  (:func:`mlpilot.registry.load_archive`), so it needs neither the store nor its credentials.

The worker starts on the first mirrored request that needs it and ends when the server closes the lane, or by
itself when the server goes away (its pipe closes). A worker that dies or stops answering (``call_timeout``) fails
the batch it was running as the candidate's error and is started again on the next need.

>>> worker = ShadowProcess(nice=19, model_threads=1)  # doctest: +SKIP
>>> worker.load("churn/2", source.export(resolved, folder), "churn")  # doctest: +SKIP
>>> worker.run_batch("churn/2", [columns], frozenset({"output"}), "churn", 2)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mlpilot.errors import MlpilotError
from mlpilot.serving.errors import ModelLoadError, PredictionError, WorkerLostError
from mlpilot.serving.model import Outputs
from mlpilot.serving.schema import Columns

__all__ = ["ShadowProcess", "decode_arrays", "encode_arrays", "read_frame", "write_frame"]

logger = logging.getLogger("mlpilot.serving")

_FRAME = struct.Struct("<II")  # header bytes, body bytes
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_MAX_HEADER = 16 * 1024 * 1024


# -- framing -------------------------------------------------------------------------------------------------
def write_frame(fd: int, header: Mapping[str, Any], body: bytes = b"") -> None:
    """One message: its sizes, a JSON header, then ``body`` (an Arrow IPC stream or nothing)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    view = memoryview(_FRAME.pack(len(head), len(body)) + head + body)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
    """The next message on ``fd``; :class:`TimeoutError` if none starts within ``timeout`` seconds,
    :class:`EOFError` if the other side went away."""
    if timeout is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            raise TimeoutError(f"no answer within {timeout:g} s")
    head_size, body_size = _FRAME.unpack(_read_exact(fd, _FRAME.size))
    if head_size > _MAX_HEADER:
        raise EOFError(f"a {head_size}-byte header: the stream is out of step")
    header = json.loads(_read_exact(fd, head_size))
    if not isinstance(header, dict):
        raise EOFError("a header that is not a JSON object: the stream is out of step")
    return header, _read_exact(fd, body_size) if body_size else b""


# -- arrays as Arrow IPC -------------------------------------------------------------------------------------
def encode_arrays(arrays: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """Named arrays with the same first dimension as one Arrow IPC stream: 1-D arrays as plain columns, wider
    ones as fixed-size lists of their flattened rows, with the shape and NumPy dtype in the field metadata."""
    fields = []
    columns = []
    for name, arr in arrays.items():
        rows = arr.shape[0]
        flat = arr.reshape(-1)
        values = pa.array(flat.tolist()) if arr.dtype.kind in "USO" else pa.array(flat)
        if arr.ndim > 1:
            width = int(np.prod(arr.shape[1:], dtype=np.int64))
            values = pa.FixedSizeListArray.from_arrays(values, width) if width else pa.nulls(rows)
        meta = {b"shape": json.dumps(list(arr.shape)).encode(), b"dtype": arr.dtype.str.encode()}
        fields.append(pa.field(name, values.type, metadata=meta))
        columns.append(values)
    batch = pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())


def decode_arrays(data: bytes) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays of :func:`encode_arrays`, with their shapes and dtypes (strings come back as objects)."""
    table = pa.ipc.open_stream(data).read_all()
    out: dict[str, np.ndarray[Any, Any]] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        meta = field.metadata or {}
        shape = tuple(json.loads(meta[b"shape"]))
        dtype = np.dtype(meta[b"dtype"].decode())
        chunk = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if len(shape) > 1:
            flat = chunk.flatten() if pa.types.is_fixed_size_list(chunk.type) else pa.array([], pa.float64())
            values = flat.to_numpy(zero_copy_only=False)
        else:
            values = chunk.to_numpy(zero_copy_only=False)
        if dtype.kind in "USO":
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
            if dtype.kind != "O":
                arr = arr.astype(dtype)
        else:
            arr = values.astype(dtype, copy=False)
        out[field.name] = arr.reshape(shape)
    return out


def _split(arrays: Mapping[str, np.ndarray[Any, Any]], rows: Sequence[int]) -> list[dict[str, Any]]:
    parts = []
    start = 0
    for n in rows:
        parts.append({k: v[start : start + n] for k, v in arrays.items()})
        start += n
    return parts


def _concat(parts: Sequence[Mapping[str, np.ndarray[Any, Any]]]) -> dict[str, np.ndarray[Any, Any]]:
    if len(parts) == 1:
        return dict(parts[0])
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# -- the server's side ---------------------------------------------------------------------------------------
class ShadowProcess:
    """The server's handle on one worker process. Every method blocks (the shadow lane calls them from its
    threads, never from the event loop); one message is under way at a time, the others wait for it."""

    def __init__(
        self, *, nice: int, model_threads: int, start_timeout: float = 120.0, call_timeout: float = 60.0
    ) -> None:
        self.nice = nice
        self.model_threads = model_threads
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._send = -1
        self._recv = -1
        #: keys loaded in the current process
        self.loaded: set[str] = set()
        #: how many processes were started (a second one means the first died)
        self.starts = 0
        #: how many batches it answered
        self.batches = 0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        try:
            self._proc = subprocess.Popen(  # noqa: S603 (our own module, by this interpreter)
                [
                    sys.executable,
                    "-m",
                    "mlpilot.serving._shadow_child",
                    str(to_child),
                    str(from_child),
                    str(self.nice),
                    str(self.model_threads),
                ],
                pass_fds=(to_child, from_child),
                # OpenMP and BLAS read these when they load (with the first model): no pool of spinning threads
                env={**os.environ, **{var: str(self.model_threads) for var in _THREAD_VARS}},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # its own session: a Ctrl-C in the server's terminal is for the server, which closes the worker
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (to_child, from_parent, to_parent, from_child):
                os.close(fd)
            raise ModelLoadError(f"cannot start the shadow worker process: {exc}") from exc
        os.close(to_child)
        os.close(from_child)
        self._send, self._recv = from_parent, to_parent
        self.loaded = set()
        self.starts += 1
        try:
            header, _ = read_frame(self._recv, self.start_timeout)
        except (EOFError, TimeoutError) as exc:
            self._kill()
            raise ModelLoadError(f"the shadow worker process did not start: {exc}") from exc
        logger.info("shadow worker process %s started", header.get("pid"))

    def _call(self, header: Mapping[str, Any], body: bytes, timeout: float) -> tuple[dict[str, Any], bytes]:
        with self._lock:
            return self._exchange(header, body, timeout)

    def _exchange(self, header: Mapping[str, Any], body: bytes, timeout: float) -> tuple[dict[str, Any], bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._start()
        try:
            write_frame(self._send, header, body)
            return read_frame(self._recv, timeout)
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            code = None
            if self._proc is not None and not isinstance(exc, TimeoutError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self._proc.wait(1.0)  # a closed pipe: the process is exiting, or gone
            self._kill()
            what = f"exited with status {code}" if code is not None else f"stopped answering ({exc})"
            raise WorkerLostError(f"the shadow worker process {what}") from exc

    def load(self, key: str, spec: Mapping[str, Any], name: str) -> None:
        """Load the exported version ``spec`` as ``key`` (served as ``name``); raises
        :class:`~mlpilot.serving.errors.ModelLoadError` if the worker refuses it."""
        try:
            message = {"op": "load", "key": key, "name": name, "spec": dict(spec), "threads": self.model_threads}
            header, _ = self._call(message, b"", self.start_timeout)
        except WorkerLostError as exc:
            raise ModelLoadError(exc.message) from exc
        if not header.get("ok"):
            raise ModelLoadError(f"the shadow worker refused {name!r}: {header.get('error')}")
        self.loaded.add(key)

    def run_batch(
        self, key: str, batch: Sequence[Columns], wanted: frozenset[str], name: str, version: int
    ) -> list[Outputs | MlpilotError]:
        """:meth:`ServedModel.run_batch <mlpilot.serving.model.ServedModel.run_batch>`, in the worker."""
        if key not in self.loaded:  # the process holding it died, and was started again since
            raise WorkerLostError(f"the shadow worker process lost model {name!r} version {version}")
        rows = [next(iter(c.values())).shape[0] for c in batch]
        body = encode_arrays(_concat(batch))
        header, answer = self._call(
            {"op": "predict", "key": key, "wanted": sorted(wanted), "rows": rows}, body, self.call_timeout
        )
        if not header.get("ok"):
            raise PredictionError(f"model {name!r} version {version} failed: {header.get('error')}")
        self.batches += 1
        done: list[int] = header["rows"]
        outputs = _split(decode_arrays(answer), [n for n in done if n >= 0]) if answer else []
        errors: dict[str, str] = header.get("errors", {})
        results: list[Outputs | MlpilotError] = []
        taken = iter(outputs)
        for i, n in enumerate(done):
            if n >= 0:
                results.append(next(taken))
            else:
                results.append(PredictionError(errors.get(str(i), "failed"), model=name, version=version))
        return results

    def unload(self, key: str) -> None:
        """Drop a version the server no longer serves (nothing to do if the process is gone)."""
        if key not in self.loaded or self._proc is None or self._proc.poll() is not None:
            return
        self.loaded.discard(key)
        try:
            self._call({"op": "unload", "key": key}, b"", self.call_timeout)
        except WorkerLostError as exc:
            logger.warning("%s", exc.message)

    def abort(self) -> None:
        """Kill the worker now, without waiting for the message under way (which fails at once): for a server
        shutting down while the worker loads a version or runs a batch."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit, and kill it if it has not within ``timeout`` seconds."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    write_frame(self._send, {"op": "close"})
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout)
            self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        for fd in (self._send, self._recv):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._send = self._recv = -1
        self.loaded = set()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the worker's side ---------------------------------------------------------------------------------------
def serve_worker(recv: int, send: int) -> int:
    """The worker's loop: answer the server's messages until it says close or its pipe closes."""
    from pathlib import Path

    from mlpilot.registry import ModelVersionInfo, load_archive
    from mlpilot.serving.model import ServedModel, limit_thread_pools
    from mlpilot.serving.source import ResolvedModel

    models: dict[str, ServedModel] = {}
    write_frame(send, {"ok": True, "pid": os.getpid()})
    while True:
        try:
            header, body = read_frame(recv)
        except EOFError:
            return 0
        op = header.get("op")
        if op == "close":
            return 0
        try:
            if op == "load":
                spec = header["spec"]
                info = ModelVersionInfo.model_validate(spec["info"])
                predictor = load_archive(Path(spec["archive"]), info, allow_pickle=bool(spec["allow_pickle"]))
                resolved = ResolvedModel(info.name, info.version, info.artifact_sha256, info.signature, info.flavor)
                models[header["key"]] = ServedModel.prepare(str(header["name"]), resolved, predictor)
                limit_thread_pools(int(header.get("threads", 1)))  # libraries the model loaded just now, too
                write_frame(send, {"ok": True})
            elif op == "predict":
                served = models[header["key"]]
                parts = _split(decode_arrays(body), header["rows"])
                results = served.run_batch(parts, frozenset(header["wanted"]))
                good = [r for r in results if not isinstance(r, MlpilotError)]
                rows = [-1 if isinstance(r, MlpilotError) else n for r, n in zip(results, header["rows"], strict=True)]
                errors = {str(i): r.message for i, r in enumerate(results) if isinstance(r, MlpilotError)}
                answer = encode_arrays(_concat(good)) if good else b""
                write_frame(send, {"ok": True, "rows": rows, "errors": errors}, answer)
            elif op == "unload":
                models.pop(header["key"], None)
                write_frame(send, {"ok": True})
            else:
                write_frame(send, {"ok": False, "error": f"unknown op {op!r}"})
        except Exception as exc:  # the server decides what a failure means; the worker keeps serving
            detail = exc.message if isinstance(exc, MlpilotError) else f"{type(exc).__name__}: {exc}"
            write_frame(send, {"ok": False, "error": detail})
