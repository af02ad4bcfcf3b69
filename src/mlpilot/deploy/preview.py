"""Verifying a blue-green candidate on its preview route: smoke requests to a running data plane.

The control plane (or the SDK) sends one-row requests to ``POST /v1/models/{endpoint}/versions/{v}:predict`` of
a model server following the deployment — the explicit-version route the traffic router lets through, so no
caller ever sees these answers — and checks three things:

- **requests**: every request is answered ``200`` by the candidate version;
- **signature**: every answer returns the outputs of the version's registered signature, one value per row,
  with the declared kind of value (integer, float, boolean, text) and per-row shape, and no missing values;
- **latency**: the p99 of the round trips is within the gate's ``latency_budget_ms`` (when set; a candidate
  that fails requests is not timed).

A data plane that cannot be reached, or that does not serve the candidate (yet), raises: that says nothing
about the candidate, so nothing is recorded. Only this module talks HTTP to the data plane.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import numpy as np

from mlpilot.deploy.entities import PreviewCheck, PreviewVerification
from mlpilot.errors import ConflictError, InvalidInputError, RemoteError

if TYPE_CHECKING:
    from mlpilot.deploy.smoke import Source
    from mlpilot.registry import TensorSpec

__all__ = ["check_output", "verify_preview_route"]

_MAX_DETAIL = 240
#: problems of one kind a check's detail lists before it summarises
_MAX_PROBLEMS = 3


def _kind_of_dtype(dtype: str) -> str:
    if dtype in ("string", "category"):
        return "text"
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        return "any"
    return {"b": "bool", "i": "integer", "u": "integer", "f": "float", "U": "text", "S": "text"}.get(kind, "any")


def _kind_of_value(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "text"
    return "other"


#: the kinds of JSON value each declared kind accepts (a float output may answer 1 for 1.0)
_ACCEPTS = {
    "float": {"float", "integer"},
    "integer": {"integer"},
    "bool": {"bool"},
    "text": {"text"},
    "any": {"float", "integer", "bool", "text", "other"},
}


def _shape_and_kinds(value: Any, kinds: set[str]) -> list[int] | None:
    """The shape of a JSON value (None when ragged), collecting the kinds of its scalars into ``kinds``."""
    if not isinstance(value, list):
        kinds.add(_kind_of_value(value))
        return []
    shapes = [_shape_and_kinds(v, kinds) for v in value]
    inner = shapes[0] if shapes else []
    if inner is None or any(s != inner for s in shapes):
        return None
    return [len(value), *inner]


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_output(name: str, values: Any, spec: TensorSpec | None, rows: int) -> str | None:
    """Why ``values`` (an output of a ``/v1`` answer for ``rows`` rows) breaks ``spec``; None when it does not.

    >>> from mlpilot.registry import TensorSpec
    >>> check_output("output", [0.25], TensorSpec(name="output", dtype="int64", shape=[-1]), 1)
    'output output: float values where the signature has int64'
    """
    if not isinstance(values, list):
        return f"output {name}: expected one value per row, got {type(values).__name__}"
    if len(values) != rows:
        return f"output {name}: {len(values)} values for {rows} rows"
    kinds: set[str] = set()
    shape = _shape_and_kinds(values, kinds)
    if shape is None:
        return f"output {name}: ragged values (rows of different shapes)"
    if "missing" in kinds:
        return f"output {name}: missing values (null, NaN or infinite)"
    if spec is None:
        return None
    declared = _kind_of_dtype(spec.dtype)
    unexpected = sorted(kinds - _ACCEPTS[declared])
    if unexpected:
        return f"output {name}: {'/'.join(unexpected)} values where the signature has {spec.dtype}"
    per_row, expected = shape[1:], spec.shape[1:]
    if len(per_row) != len(expected) or any(e not in (-1, g) for e, g in zip(expected, per_row, strict=False)):
        return f"output {name}: shape {_shape_text([-1, *per_row])} where the signature has {_shape_text(spec.shape)}"
    return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        message = f"{body.get('type', 'error')}: {body['error']}"
    else:
        message = " ".join(response.text.split())
    text = f"HTTP {response.status_code} {message}"
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _served_outputs(http: httpx.Client, url: str, endpoint: str, version: int) -> set[str]:
    """The outputs the data plane serves for the candidate; raises when it cannot be asked or does not serve it."""
    path = f"/v2/models/{quote(endpoint, safe='')}/versions/{version}"
    try:
        response = http.get(path)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the data plane at {url}: {exc}", field="url") from exc
    if response.status_code == 404:
        raise ConflictError(
            f"the data plane at {url} does not serve {endpoint} v{version}: point the verification at a model server "
            "following the deployment, once it loaded the preview",
            field="url",
        )
    if response.status_code != 200:
        raise RemoteError(f"the data plane at {url} answered {_error_text(response)} on {path}", field="url")
    try:
        outputs = response.json().get("outputs") or []
        return {str(o["name"]) for o in outputs}
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise RemoteError(f"{url} is not an mlpilot model server: {path} answered {response.text[:80]!r}") from exc


def _summary(problems: list[str], total: int, what: str) -> str:
    unique = list(dict.fromkeys(problems))
    shown = "; ".join(unique[:_MAX_PROBLEMS])
    more = f" (and {len(unique) - _MAX_PROBLEMS} more)" if len(unique) > _MAX_PROBLEMS else ""
    return f"{len(problems)} of {total} {what}: {shown}{more}"


def verify_preview_route(
    url: str,
    endpoint: str,
    version: int,
    rows: Sequence[Any],
    *,
    outputs: Sequence[TensorSpec],
    rollout: int,
    source: Source,
    latency_budget_ms: float | None,
    timeout: float,
    now_ms: int,
) -> PreviewVerification:
    """Send each of ``rows`` as a one-row request to ``endpoint`` v``version`` on the data plane at ``url``, and
    judge the answers against the version's output signature ``outputs`` and the latency budget."""
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"url: expected the data plane's http:// or https:// URL, got {url!r}", field="url")
    if not rows:
        raise InvalidInputError("requests: expected at least one smoke request", field="requests")
    declared = {spec.name: spec for spec in outputs}
    failed: list[str] = []
    missing: list[str] = []
    broken: list[str] = []  # per answer that breaks the signature: its problems
    timings: list[float] = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as http:
        served = _served_outputs(http, url, endpoint, version)
        for name in declared:
            if name not in served:
                missing.append(f"output {name}: in v{version}'s signature but not served")
        wanted = [name for name in declared if name in served]
        path = f"/v1/models/{quote(endpoint, safe='')}/versions/{version}:predict"
        for row in rows:
            body: dict[str, Any] = {"instances": [row]}
            if wanted:
                body["outputs"] = wanted
            started = time.perf_counter()
            try:
                response = http.post(path, json=body)
            except httpx.TimeoutException:
                failed.append(f"no answer within {timeout:g} s")
                continue
            except httpx.HTTPError as exc:
                failed.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                failed.append(_error_text(response))
                continue
            try:
                doc = response.json()
            except ValueError:
                failed.append(f"an answer that is not JSON: {response.text[:80]!r}")
                continue
            if doc.get("version") != version:
                failed.append(f"answered by v{doc.get('version')}, not v{version}")
                continue
            timings.append(elapsed)
            answers = doc.get("outputs") or {}
            if wanted:
                found = [check_output(n, answers.get(n), declared[n], 1) for n in wanted]
            else:
                found = [check_output("predictions", doc.get("predictions"), None, 1)]
            problems = [p for p in found if p is not None]
            if problems:
                broken.append("; ".join(problems))
    total = len(rows)
    checks = [
        PreviewCheck(
            name="requests",
            passed=not failed,
            detail=_summary(failed, total, "smoke requests failed")
            if failed
            else f"{total} smoke requests answered by v{version}",
        ),
        PreviewCheck(
            name="signature",
            passed=not (missing or broken),
            detail="; ".join([*missing, *([_summary(broken, len(timings), "answers break it")] if broken else [])])
            if missing or broken
            else (
                f"every answer returns {', '.join(declared)} as v{version}'s signature declares"
                if declared
                else f"v{version} has no output signature: checked one finite prediction per row"
            ),
        ),
    ]
    p50 = float(np.percentile(timings, 50)) if timings else None
    p99 = float(np.percentile(timings, 99)) if timings else None
    if failed:
        checks.append(PreviewCheck(name="latency", passed=False, detail=f"v{version} not timed: requests failed"))
    elif p99 is not None and latency_budget_ms is not None:
        ok = p99 <= latency_budget_ms
        verdict = "within" if ok else "over"
        detail = f"p99 {p99:.2f} ms {verdict} the {latency_budget_ms:g} ms budget"
        checks.append(PreviewCheck(name="latency", passed=ok, detail=detail))
    elif p99 is not None:
        detail = f"p99 {p99:.2f} ms (no latency budget: set the gate's latency_budget_ms)"
        checks.append(PreviewCheck(name="latency", passed=True, detail=detail))
    return PreviewVerification(
        version=version,
        rollout=rollout,
        passed=all(c.passed for c in checks),
        url=url,
        time=now_ms,
        inputs=source,
        requests=total,
        answered=len(timings),
        p50_ms=p50,
        p99_ms=p99,
        latency_budget_ms=latency_budget_ms,
        checks=checks,
    )
