"""``mlpilot serve``: the model server (data plane) for registered models."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from mlpilot.cli.context import client, settings, url_option
from mlpilot.cli.output import err_console
from mlpilot.errors import InvalidInputError

__all__ = ["COMMANDS", "serve"]


def _prediction_log_url() -> str:
    """``$MLPILOT_HOME/predictions``, or ``<artifact store URL>/predictions`` when the artifacts live elsewhere."""
    s = settings()
    if s.artifact_url:
        return f"{s.artifact_url.rstrip('/')}/predictions"
    return str(s.home.resolve() / "predictions")


class _JsonLines(logging.Formatter):
    """Log records as one JSON object per line, like the access log."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        doc: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    for name in ("mlpilot", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


@click.command("serve")
@click.argument("refs", nargs=-1)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A TOML serving config.",
)
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option("--max-batch-size", type=int, default=None, help="Most rows per model call (default 64).")
@click.option("--max-wait-ms", type=float, default=None, help="Longest a batch waits for company (default 2).")
@click.option("--max-queue-size", type=int, default=None, help="Rows queued per model before 503 (default 2048).")
@click.option("--queue-timeout-ms", type=float, default=None, help="Queue-time budget before 503 (default 1000).")
@click.option("--threads", type=int, default=None, help="Inference threads (default: cores - 1, at least 1).")
@click.option("--refresh-interval", type=float, default=None, help="Seconds between alias checks (default 10).")
@click.option("--log-sample-rate", type=float, default=None, help="Share of predictions logged (default 1).")
@click.option("--log-url", default=None, help="Where the prediction log goes (default $MLPILOT_HOME/predictions).")
@click.option("--no-prediction-log", is_flag=True, help="Do not log predictions.")
@click.option("--no-access-log", is_flag=True, help="Do not write an access-log line per request.")
@click.option("--no-pickle", is_flag=True, help="Refuse pickled Python models (the pyfunc flavor).")
@url_option
def serve(
    refs: tuple[str, ...],
    config_path: Path | None,
    host: str | None,
    port: int | None,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    max_queue_size: int | None,
    queue_timeout_ms: float | None,
    threads: int | None,
    refresh_interval: float | None,
    log_sample_rate: float | None,
    log_url: str | None,
    no_prediction_log: bool,
    no_access_log: bool,
    no_pickle: bool,
    url: str | None,
) -> None:
    """Serve registered models: REFS like churn@champion or fraud/3 (or --config FILE).

    Speaks the Open Inference Protocol v2 (/v2/models/NAME/infer, binary tensors included), MLflow's
    /invocations and /v1/models/NAME:predict; exports /metrics. Alias moves are picked up and hot-swapped.
    Models come from the registry of --url (a control plane or a database), else of the settings.
    """
    from mlpilot.serving import ModelServer, RegistrySource, ServeConfig, load_serve_config
    from mlpilot.serving.accesslog import AccessLog

    if bool(refs) == bool(config_path):
        raise InvalidInputError("name the models to serve as REFS or with --config FILE (not both)", field="refs")
    options: dict[str, Any] = {"host": host, "port": port, "inference_threads": threads}
    options["refresh_interval"] = refresh_interval
    if no_access_log:
        options["access_log"] = False
    options = {k: v for k, v in options.items() if v is not None}
    if config_path is not None:
        config = load_serve_config(config_path, **options)
    else:
        config = ServeConfig.from_dict({"models": [{"ref": r} for r in refs], **options}, source="mlpilot serve")
    batching = {
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "max_queue_size": max_queue_size,
        "queue_timeout_ms": queue_timeout_ms,
    }
    log = {"sample_rate": log_sample_rate, "url": log_url, "enabled": False if no_prediction_log else None}
    config = ServeConfig.from_dict(
        {
            **config.model_dump(),
            "batching": {
                **config.batching.model_dump(),
                **{k: v for k, v in batching.items() if v is not None},
            },
            "log": {**config.log.model_dump(), **{k: v for k, v in log.items() if v is not None}},
        },
        source="mlpilot serve",
    )
    s = settings()
    _setup_logging(s.log_level)
    sdk = client(url)
    source = RegistrySource(sdk.registry, sdk.artifacts, allow_pickle=not no_pickle)
    err_console.print(f"loading {', '.join(m.ref for m in config.models)} …")
    access = AccessLog(sys.stderr.buffer)
    server = ModelServer(
        config, source, log_url=_prediction_log_url(), config_path=config_path, access_log=access
    ).load()
    for item in server.repository.describe():
        versions = ", ".join(str(v) for v in item["versions"])
        err_console.print(f"  {item['name']}: version {versions} (from {', '.join(item['refs'])})")
    log_note = server.predlog.url if server.predlog else "off"
    err_console.print(
        f"mlpilot serve on http://{config.host}:{config.port} ({server.threads} inference thread(s); "
        f"prediction log: {log_note})"
    )
    server.run()


COMMANDS = [serve]
