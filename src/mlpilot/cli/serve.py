"""``mlpilot serve``: the model server (data plane) for registered models, or for deployments it follows."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mlpilot.cli.context import client, settings, url_option
from mlpilot.cli.output import err_console
from mlpilot.errors import InvalidInputError

__all__ = [
    "COMMANDS",
    "config_overrides",
    "follow_deployments",
    "follow_options",
    "run_until_stopped",
    "serve",
    "server_options",
]


def _prediction_log_url() -> str:
    """Where monitoring reads the log: ``MLPILOT_PREDICTIONS_URL``, else ``<artifact store URL>/predictions`` when
    the artifacts live elsewhere, else ``$MLPILOT_HOME/predictions``."""
    from mlpilot.monitor.backend import default_predictions_url

    return default_predictions_url(settings())


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived after the server had shut down gracefully."""


def run_until_stopped(run: Callable[[], None]) -> None:
    """Serve with ``run`` (a blocking uvicorn run); a graceful stop on SIGINT or SIGTERM returns normally (exit 0).

    uvicorn shuts down on either signal, then raises the signal again once it restored the previous handlers, so
    that the process dies of it (SIGINT as ``KeyboardInterrupt``, SIGTERM killing it outright). The shutdown has
    flushed the prediction and access logs by then: for a server that is the expected way to end, not a failure.
    """

    def stopped(_signum: int, _frame: Any) -> None:
        raise _Stopped

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stopped) for sig in handled}
    try:
        run()
    except (_Stopped, KeyboardInterrupt):
        return
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def server_options(func: Any) -> Any:
    """The options every model server takes, whether it serves REFS or follows deployments."""
    options = [
        click.option("--host", default=None, help="Address to bind (default 127.0.0.1)."),
        click.option("--port", type=int, default=None, help="Port (default 8080)."),
        click.option("--max-batch-size", type=int, default=None, help="Most rows per model call (default 64)."),
        click.option("--max-wait-ms", type=float, default=None, help="Longest a batch waits for company (default 2)."),
        click.option(
            "--max-queue-size", type=int, default=None, help="Rows queued per model before 503 (default 2048)."
        ),
        click.option(
            "--queue-timeout-ms", type=float, default=None, help="Queue-time budget before 503 (default 1000)."
        ),
        click.option("--threads", type=int, default=None, help="Inference threads (default: cores - 1, at least 1)."),
        click.option("--log-sample-rate", type=float, default=None, help="Share of predictions logged (default 1)."),
        click.option(
            "--log-url",
            default=None,
            help="Where the prediction log goes (default MLPILOT_PREDICTIONS_URL, else $MLPILOT_HOME/predictions).",
        ),
        click.option("--no-prediction-log", is_flag=True, help="Do not log predictions."),
        click.option("--no-access-log", is_flag=True, help="Do not write an access-log line per request."),
        click.option("--no-pickle", is_flag=True, help="Refuse pickled Python models (the pyfunc flavor)."),
        click.option(
            "--shadow",
            "shadow",
            multiple=True,
            metavar="KEY=VALUE",
            help="A shadow-lane setting ([serve.shadow]), e.g. --shadow max_queue=512; repeatable.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def follow_options(func: Any) -> Any:
    """The options of a server that follows deployments on a control plane."""
    options = [
        click.option(
            "--control-plane",
            "control_plane",
            default=None,
            metavar="URL",
            help="The mlpilot server to follow (default: MLPILOT_SERVER_URL).",
        ),
        click.option(
            "--poll-interval", type=float, default=0.2, show_default=True, help="Seconds between config checks."
        ),
        click.option(
            "--initial-config",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Serving documents (JSON) to start from when the control plane is unreachable.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def config_overrides(
    *,
    threads: int | None = None,
    max_batch_size: int | None = None,
    max_wait_ms: float | None = None,
    max_queue_size: int | None = None,
    queue_timeout_ms: float | None = None,
    log_sample_rate: float | None = None,
    log_url: str | None = None,
    no_prediction_log: bool = False,
    no_access_log: bool = False,
    shadow: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The serving-config fields the command line sets (only those given)."""
    batching = {
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "max_queue_size": max_queue_size,
        "queue_timeout_ms": queue_timeout_ms,
    }
    log = {"sample_rate": log_sample_rate, "url": log_url, "enabled": False if no_prediction_log else None}
    out: dict[str, Any] = {
        "inference_threads": threads,
        "batching": {k: v for k, v in batching.items() if v is not None},
        "log": {k: v for k, v in log.items() if v is not None},
    }
    if no_access_log:
        out["access_log"] = False
    if shadow:
        out["shadow"] = shadow_settings(shadow)
    return {k: v for k, v in out.items() if v is not None}


def shadow_settings(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--shadow KEY=VALUE`` options as a ``[serve.shadow]`` table; the serving config checks the keys, and
    converts and checks the values (a number where one is expected, ``isolation=thread``...).

    >>> shadow_settings(("live_grace_ms=2.5", "isolation=thread"))
    {'live_grace_ms': '2.5', 'isolation': 'thread'}
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise InvalidInputError(f"--shadow: expected KEY=VALUE, got {pair!r}", field="shadow")
        out[key] = raw
    return out


def follow_deployments(
    names: tuple[str, ...],
    *,
    control_plane: str | None,
    host: str | None,
    port: int | None,
    poll_interval: float,
    initial_config: Path | None,
    overrides: dict[str, Any],
    no_pickle: bool,
) -> None:
    """Run a data plane serving deployments ``names`` as the control plane says (``mlpilot serve --follow`` and
    its alias ``mlpilot deploy serve``): load their versions, route, follow changes, report statistics.

    A deployment created with a feature service (``mlpilot deploy create … --features SERVICE``) has its inputs
    looked up in the online store of ``MLPILOT_FEATURES_ONLINE_URL``, with the definitions registered on the
    control plane."""
    from mlpilot.deploy.dataplane import build_data_plane
    from mlpilot.features.online import default_online_url
    from mlpilot.serving import RegistrySource
    from mlpilot.serving.accesslog import AccessLog

    s = settings()
    control = control_plane or s.server_url
    if not control:
        raise InvalidInputError(
            "--control-plane: name the mlpilot server to follow (or set MLPILOT_SERVER_URL)", field="control_plane"
        )
    if not control.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"--control-plane: expected the URL of an mlpilot server (http://...), got {control!r}",
            field="control_plane",
        )
    _setup_logging(s.log_level)
    sdk = client(control)
    source = RegistrySource(sdk.registry, sdk.artifacts, allow_pickle=not no_pickle, features=sdk.features)
    token = s.token.get_secret_value() if s.token else None
    host, port = host or "127.0.0.1", 8080 if port is None else port
    err_console.print(f"following {', '.join(names)} on {control} …")
    plane = build_data_plane(
        source,
        control_url=control,
        names=list(names),
        token=token,
        host=host,
        port=port,
        poll_interval=poll_interval,
        initial_config=initial_config,
        log_url=_prediction_log_url(),
        serve_options={"access_log": True, **overrides},
        access_log=AccessLog(sys.stderr.buffer),
        features_online_url=s.features_online_url or default_online_url(s.home),
    )
    predlog = plane.server.predlog
    err_console.print(
        f"mlpilot serve on http://{host}:{port} following {', '.join(names)} ({plane.server.threads} inference "
        f"thread(s); prediction log: {predlog.url if predlog else 'off'})"
    )
    run_until_stopped(lambda: plane.run(host, port))


@click.command("serve")
@click.argument("refs", nargs=-1)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A TOML serving config.",
)
@click.option(
    "--follow",
    "follow",
    multiple=True,
    metavar="NAME",
    help="Serve deployment NAME as the control plane says (canaries, shadows, A/B, rollbacks); repeatable.",
)
@follow_options
@server_options
@click.option("--refresh-interval", type=float, default=None, help="Seconds between alias checks (default 10).")
@click.option(
    "--features",
    "feature_service",
    default=None,
    metavar="SERVICE",
    help="Look the model's inputs up from feature SERVICE: callers send entity keys (one REF only).",
)
@url_option
def serve(
    refs: tuple[str, ...],
    config_path: Path | None,
    follow: tuple[str, ...],
    control_plane: str | None,
    poll_interval: float,
    initial_config: Path | None,
    host: str | None,
    port: int | None,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    max_queue_size: int | None,
    queue_timeout_ms: float | None,
    threads: int | None,
    refresh_interval: float | None,
    feature_service: str | None,
    log_sample_rate: float | None,
    log_url: str | None,
    no_prediction_log: bool,
    no_access_log: bool,
    no_pickle: bool,
    shadow: tuple[str, ...],
    url: str | None,
) -> None:
    """Serve registered models: REFS like churn@champion or fraud/3 (or --config FILE), or the deployments
    named by --follow.

    Speaks the Open Inference Protocol v2 (/v2/models/NAME/infer, binary tensors included), MLflow's
    /invocations and /v1/models/NAME:predict; exports /metrics. Alias moves are picked up and hot-swapped.
    Models come from the registry of --url (a control plane or a database), else of the settings. With
    --follow NAME, the versions, traffic split and rollouts of deployment NAME come from the control plane
    (--control-plane URL, or --url), which the server polls and reports its traffic to.
    """
    from mlpilot.features.online import default_online_url
    from mlpilot.serving import ModelServer, RegistrySource, ServeConfig, load_serve_config
    from mlpilot.serving.accesslog import AccessLog

    if follow:
        if refs or config_path:
            raise InvalidInputError(
                "--follow: the control plane names the versions to serve; drop REFS and --config", field="follow"
            )
        if refresh_interval is not None:
            raise InvalidInputError(
                "--refresh-interval: a followed deployment pins its versions; --poll-interval sets how often the "
                "control plane is asked",
                field="refresh_interval",
            )
        if feature_service is not None:
            raise InvalidInputError(
                "--features: a followed deployment's feature service is part of the deployment: set it with "
                "`mlpilot deploy create NAME --model M --version V --features SERVICE`",
                field="features",
            )
        follow_deployments(
            follow,
            control_plane=control_plane or url,
            host=host,
            port=port,
            poll_interval=poll_interval,
            initial_config=initial_config,
            overrides=config_overrides(
                threads=threads,
                max_batch_size=max_batch_size,
                max_wait_ms=max_wait_ms,
                max_queue_size=max_queue_size,
                queue_timeout_ms=queue_timeout_ms,
                log_sample_rate=log_sample_rate,
                log_url=log_url,
                no_prediction_log=no_prediction_log,
                no_access_log=no_access_log,
                shadow=shadow,
            ),
            no_pickle=no_pickle,
        )
        return
    if control_plane is not None or initial_config is not None:
        raise InvalidInputError("--control-plane and --initial-config go with --follow NAME", field="follow")
    if bool(refs) == bool(config_path):
        raise InvalidInputError("name the models to serve as REFS or with --config FILE (not both)", field="refs")
    if feature_service is not None and len(refs) != 1:
        raise InvalidInputError(
            "--features: applies to exactly one REF (in a --config file: features = { service = ... })",
            field="features",
        )
    options: dict[str, Any] = {"host": host, "port": port, "inference_threads": threads}
    options["refresh_interval"] = refresh_interval
    if no_access_log:
        options["access_log"] = False
    options = {k: v for k, v in options.items() if v is not None}
    if config_path is not None:
        config = load_serve_config(config_path, **options)
    else:
        config = ServeConfig.from_dict({"models": [{"ref": r} for r in refs], **options}, source="mlpilot serve")
    if feature_service is not None:
        config = config.with_features({refs[0]: feature_service})
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
            "shadow": {**config.shadow.model_dump(), **shadow_settings(shadow)},
        },
        source="mlpilot serve",
    )
    s = settings()
    _setup_logging(s.log_level)
    sdk = client(url)
    source = RegistrySource(sdk.registry, sdk.artifacts, allow_pickle=not no_pickle, features=sdk.features)
    err_console.print(f"loading {', '.join(m.ref for m in config.models)} …")
    access = AccessLog(sys.stderr.buffer)
    server = ModelServer(
        config,
        source,
        log_url=_prediction_log_url(),
        config_path=config_path,
        access_log=access,
        features_online_url=s.features_online_url or default_online_url(s.home),
    ).load()
    for item in server.repository.describe():
        versions = ", ".join(str(v) for v in item["versions"])
        err_console.print(f"  {item['name']}: version {versions} (from {', '.join(item['refs'])})")
    log_note = server.predlog.url if server.predlog else "off"
    err_console.print(
        f"mlpilot serve on http://{config.host}:{config.port} ({server.threads} inference thread(s); "
        f"prediction log: {log_note})"
    )
    run_until_stopped(server.run)


COMMANDS = [serve]
