"""``mlpilot deploy …``: create endpoints, roll versions out (canary, blue-green, shadow, A/B), promote, roll
back, read the analysis, render Kubernetes manifests, and run the data plane or the rollout controller."""

from __future__ import annotations

from pathlib import Path

import click

from mlpilot.cli import deploy_ops
from mlpilot.cli.context import settings, url_option
from mlpilot.cli.deploy_base import backend, done, gate_option, json_option, print_history, reason_option, show_info
from mlpilot.cli.output import console, fmt_time, print_json, print_table
from mlpilot.cli.serve import config_overrides, follow_deployments, follow_options, server_options
from mlpilot.errors import InvalidInputError

__all__ = ["COMMANDS", "deploy"]


def _steps(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidInputError(f"--steps: expected percentages like 5,25,50,100, got {text!r}", field="steps") from exc


@click.group("deploy")
def deploy() -> None:
    """Deployments: endpoints, rollouts, analysis, promotion and rollback."""


@deploy.command("create")
@click.argument("name")
@click.option("-m", "--model", required=True, help="Registered model name.")
@click.option("-v", "--version", "version", type=int, required=True, help="Version to serve.")
@click.option("--retention-seconds", type=float, default=600.0, show_default=True, help="Standby window.")
@click.option(
    "--features",
    "feature_service",
    default=None,
    metavar="SERVICE",
    help="Every version looks its inputs up from feature SERVICE: callers send entity keys.",
)
@click.option(
    "--features-project",
    default="default",
    show_default=True,
    help="The feature registry project SERVICE is registered in.",
)
@reason_option
@json_option
@url_option
def create(
    name: str,
    model: str,
    version: int,
    retention_seconds: float,
    feature_service: str | None,
    features_project: str,
    reason: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Create endpoint NAME serving MODEL version VERSION (champion moves to it).

    With --features SERVICE, the model servers following NAME look every version's inputs up from that
    feature service (canaries, shadows and previews included): callers send entity keys.
    """
    from pydantic import ValidationError

    from mlpilot.deploy import EndpointFeatures

    features = None
    if feature_service is not None:
        try:
            features = EndpointFeatures(service=feature_service, project=features_project)
        except ValidationError as exc:
            first = exc.errors()[0]
            option = "--features-project" if first["loc"] == ("project",) else "--features"
            raise InvalidInputError(f"{option}: {first['msg']}", field=option.lstrip("-")) from exc
    elif features_project != "default":
        raise InvalidInputError("--features-project: goes with --features SERVICE", field="features_project")
    info = backend(url).create(
        name,
        model=model,
        version=version,
        retention_seconds=retention_seconds,
        features=features,
        actor="cli",
        reason=reason,
    )
    done(info, as_json)


@deploy.command("list")
@click.option("-m", "--model", default=None, help="Only deployments of this model.")
@json_option
@url_option
def list_(model: str | None, as_json: bool, url: str | None) -> None:
    """List deployments."""
    items = backend(url).list_deployments(model=model)
    if as_json:
        print_json(items)
        return
    print_table(
        None,
        ["name", "model", "state", "strategy", "variants", "revision", "updated"],
        (
            [
                d.name,
                d.spec.model,
                d.spec.state,
                d.spec.strategy,
                ", ".join(f"{v.name} {v.role} {v.weight:g}%" for v in d.spec.variants),
                d.revision,
                fmt_time(d.updated_at),
            ]
            for d in items
        ),
        empty="no deployments yet: mlpilot deploy create NAME --model M --version V",
    )


@deploy.command("show")
@click.argument("name")
@click.option("-n", "--history", "count", type=click.IntRange(1, 1000), default=10, show_default=True)
@json_option
@url_option
def show(name: str, count: int, as_json: bool, url: str | None) -> None:
    """Show deployment NAME and its recent history."""
    b = backend(url)
    info = b.get(name)
    history = b.history(name, after_revision=max(0, info.revision - count))
    if as_json:
        print_json({"deployment": info, "history": history})
        return
    show_info(info)
    print_history(history)


@deploy.command("canary")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--steps", default="5,25,50,100", show_default=True, help="Canary traffic percentages per step.")
@click.option("--min-step-seconds", type=float, default=60.0, show_default=True)
@click.option("--min-step-requests", type=int, default=500, show_default=True)
@click.option("--max-step-seconds", type=float, default=None, help="Pause a step still inconclusive after this.")
@gate_option
@reason_option
@json_option
@url_option
def canary(
    name: str,
    version: int,
    steps: str,
    min_step_seconds: float,
    min_step_requests: int,
    max_step_seconds: float | None,
    skip_gate: bool,
    reason: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Start a canary of VERSION on NAME (after the gate)."""
    from mlpilot.deploy import CanaryConfig

    config = CanaryConfig(
        steps=_steps(steps),
        min_step_seconds=min_step_seconds,
        min_step_requests=min_step_requests,
        max_step_seconds=max_step_seconds,
    )
    info = backend(url).start_canary(name, version, canary=config, skip_gate=skip_gate, actor="cli", reason=reason)
    done(info, as_json)


@deploy.command("blue-green")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--retention-seconds", type=float, default=None, help="How long the old version stays warm.")
@gate_option
@reason_option
@json_option
@url_option
def blue_green(
    name: str,
    version: int,
    retention_seconds: float | None,
    skip_gate: bool,
    reason: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Load VERSION next to the primary for preview; `mlpilot deploy promote` switches all traffic."""
    info = backend(url).start_blue_green(
        name, version, retention_seconds=retention_seconds, skip_gate=skip_gate, actor="cli", reason=reason
    )
    done(info, as_json)


@deploy.command("shadow")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--mirror", type=click.FloatRange(0, 100, min_open=True), default=100.0, show_default=True)
@gate_option
@reason_option
@json_option
@url_option
def shadow(
    name: str, version: int, mirror: float, skip_gate: bool, reason: str, as_json: bool, url: str | None
) -> None:
    """Mirror MIRROR% of live traffic to VERSION (callers only see the primary's answers)."""
    info = backend(url).start_shadow(name, version, mirror=mirror, skip_gate=skip_gate, actor="cli", reason=reason)
    done(info, as_json)


@deploy.command("ab")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--split", type=click.FloatRange(0, 100, min_open=True, max_open=True), default=50.0)
@click.option("--metric", type=click.Choice(["outcome", "accuracy"]), default="outcome", show_default=True)
@click.option("--lower-is-better", is_flag=True, help="A lower outcome wins (e.g. latency, churn).")
@gate_option
@reason_option
@json_option
@url_option
def ab(
    name: str,
    version: int,
    split: float,
    metric: str,
    lower_is_better: bool,
    skip_gate: bool,
    reason: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Start an A/B test: SPLIT% of assignment keys get VERSION (B)."""
    from mlpilot.deploy import ABConfig

    config = ABConfig(split=split, metric=metric, higher_is_better=not lower_is_better)  # type: ignore[arg-type]
    info = backend(url).start_ab(name, version, ab=config, skip_gate=skip_gate, actor="cli", reason=reason)
    done(info, as_json)


def _action(verb: str, help_text: str) -> click.Command:
    @click.command(verb, help=help_text)
    @click.argument("name")
    @reason_option
    @json_option
    @url_option
    def command(name: str, reason: str, as_json: bool, url: str | None) -> None:
        b = backend(url)
        method = {"rollback": b.rollback, "pause": b.pause, "resume": b.resume}[verb]
        done(method(name, actor="cli", reason=reason), as_json)

    return command


for _verb, _help in (
    ("rollback", "Restore the stable state NAME was in before its last rollout (one transaction)."),
    ("pause", "Stop the canary of NAME from progressing (its split stays)."),
    ("resume", "Resume the paused canary of NAME."),
):
    deploy.add_command(_action(_verb, _help))


@deploy.command("analyze")
@click.argument("name")
@click.option("--apply", "apply_", is_flag=True, help="Act on the decision now, as the controller would.")
@json_option
@url_option
def analyze(name: str, apply_: bool, as_json: bool, url: str | None) -> None:
    """Show the analysis of NAME's rollout (and with --apply, act on it)."""
    from mlpilot.deploy import reconcile

    b = backend(url)
    report = b.analyze(name)
    outcome = reconcile(b, name) if apply_ else None
    if as_json:
        print_json({"report": report, "applied": outcome})
        return
    console.print(f"[bold]{report.name}[/bold] {report.strategy} / {report.state}: [bold]{report.action}[/bold]")
    console.print(report.reason)
    print_table(
        None,
        ["variant", "role", "weight %", "requests", "error rate", "p99 ms", "outcomes"],
        (
            [
                k,
                v["role"],
                f"{v['weight']:g}",
                v["requests"],
                "-" if v["error_rate"] is None else f"{100 * v['error_rate']:.2f}%",
                "-" if v["p99_ms"] is None else f"{v['p99_ms']:.2f}",
                int(v["outcomes"]),
            ]
            for k, v in report.variants.items()
        ),
    )
    if report.checks:
        print_table(
            "checks", ["metric", "status", "detail"], ([c["metric"], c["status"], c["detail"]] for c in report.checks)
        )
    for title, section in (("A/B", report.ab), ("shadow", report.shadow)):
        if section:
            print_table(title, ["", "value"], ([k, v] for k, v in section.items() if k not in ("decision", "arms")))
    if outcome is not None:
        console.print(f"applied: {outcome.action} (revision {outcome.revision})")


@deploy.command("render")
@click.argument("name")
@click.option("--target", type=click.Choice(["kubernetes"]), default="kubernetes", show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--image", default="ghcr.io/mlpilot/mlpilot:latest", show_default=True)
@click.option("--namespace", default=None)
@click.option("--control-plane-url", default="http://mlpilot-server:5080", show_default=True)
@click.option(
    "--token-secret", default="mlpilot-token", show_default=True, help="Secret with key 'token'; '' for none."
)
@click.option("--replicas", type=click.IntRange(1, 1000), default=2, show_default=True)
@click.option("--max-replicas", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--cpu", default="500m", show_default=True, help="CPU request (limit: 4x).")
@click.option("--memory", default="1Gi", show_default=True, help="Memory request (limit: 2x).")
@click.option("--kubernetes-version", default="1.30", show_default=True)
@click.option(
    "--predictions-url",
    default=None,
    metavar="URL",
    help="Shared storage for the prediction log, where the control plane reads it (default: "
    "MLPILOT_PREDICTIONS_URL, else MLPILOT_ARTIFACT_URL/predictions).",
)
@click.option(
    "--features-online-url",
    default=None,
    metavar="URL",
    help="The shared online store (redis://…) of an endpoint with a feature service (default: "
    "MLPILOT_FEATURES_ONLINE_URL when it is Redis).",
)
@click.option(
    "--env-secret",
    default=None,
    metavar="NAME",
    help="A Secret whose keys become the pods' environment (storage credentials, a Redis URL with a password).",
)
@url_option
def render(
    name: str,
    target: str,
    output: Path,
    image: str,
    namespace: str | None,
    control_plane_url: str,
    token_secret: str,
    replicas: int,
    max_replicas: int,
    cpu: str,
    memory: str,
    kubernetes_version: str,
    predictions_url: str | None,
    features_online_url: str | None,
    env_secret: str | None,
    url: str | None,
) -> None:
    """Write NAME's manifests (ConfigMap, Deployment, Service, HPA, PDB), validated against the schemas.

    The pods write their prediction log to --predictions-url: the storage the control plane's label feed and
    monitoring read (its MLPILOT_PREDICTIONS_URL, else its MLPILOT_ARTIFACT_URL + /predictions).
    """
    from mlpilot.deploy.kubernetes import KubernetesOptions, render_kubernetes, validate_manifests, write_manifests

    s = settings()
    if predictions_url is None:
        predictions_url = s.predictions_url or (f"{s.artifact_url.rstrip('/')}/predictions" if s.artifact_url else None)
    if predictions_url is None:
        raise InvalidInputError(
            "--predictions-url: name the shared storage the pods write the prediction log to, where the control "
            "plane reads it (e.g. s3://ml-artifacts/mlpilot/predictions)",
            field="predictions_url",
        )
    online = s.features_online_url
    if features_online_url is None and online is not None and online.startswith(("redis://", "rediss://")):
        features_online_url = online
    info = backend(url).get(name)
    options = KubernetesOptions(
        image=image,
        namespace=namespace,
        control_plane_url=control_plane_url,
        token_secret=token_secret or None,
        replicas=replicas,
        min_replicas=min(replicas, max_replicas),
        max_replicas=max_replicas,
        cpu_request=cpu,
        cpu_limit=_scale(cpu, 4),
        memory_request=memory,
        memory_limit=_scale(memory, 2),
        kubernetes_version=kubernetes_version,
        predictions_url=predictions_url,
        features_online_url=features_online_url if info.spec.features is not None else None,
        env_secret=env_secret or None,
    )
    docs = render_kubernetes(info, options)
    validate_manifests(docs, kubernetes_version)
    for path in write_manifests(docs, output):
        console.print(f"wrote {path}")
    console.print(f"validated against the Kubernetes {kubernetes_version} schemas ({target})")


def _scale(quantity: str, factor: int) -> str:
    """``500m`` x4 -> ``2000m``; ``1Gi`` x2 -> ``2Gi``: a limit from a request."""
    digits = "".join(ch for ch in quantity if ch.isdigit() or ch == ".")
    unit = quantity[len(digits) :]
    if not digits:
        raise InvalidInputError(f"expected a quantity such as 500m or 1Gi, got {quantity!r}", field="quantity")
    value = float(digits) * factor
    return f"{value:g}{unit}"


@deploy.command("serve")
@click.argument("names", nargs=-1, required=True)
@follow_options
@server_options
def serve(
    names: tuple[str, ...],
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
    log_sample_rate: float | None,
    log_url: str | None,
    no_prediction_log: bool,
    no_access_log: bool,
    no_pickle: bool,
    shadow: tuple[str, ...],
) -> None:
    """Serve deployments NAMES, following the control plane (routing, canaries, shadows, rollbacks).

    The same server as `mlpilot serve --follow NAME`, with the same options.
    """
    follow_deployments(
        names,
        control_plane=control_plane,
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


@deploy.command("controller")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between looks.")
@click.option("--once", is_flag=True, help="Look once and exit.")
@url_option
def controller(interval: float, once: bool, url: str | None) -> None:
    """Run the rollout controller: advance, promote, pause or roll back every active deployment.

    On the embedded store it also feeds labels logged through monitoring into the canaries' online accuracy
    (against a server, the server's own controller does that).
    """
    import time

    from mlpilot.deploy import Controller, Deployments

    b = backend(url)
    feed = None
    if isinstance(b, Deployments) and b.artifacts is not None:
        from mlpilot.deploy.labels import LabelFeed
        from mlpilot.monitor.backend import default_predictions_url
        from mlpilot.monitor.service import Monitor

        monitor = Monitor(b.store, b.artifacts, predictions_url=default_predictions_url(settings()))
        feed = LabelFeed(b, monitor)
    ctl = Controller(b, interval=interval, labels=feed)
    while True:
        for outcome in ctl.run_once():
            if outcome.action != "none":
                console.print(f"{outcome.name}: {outcome.action} (revision {outcome.revision}): {outcome.reason}")
        if once:
            return
        time.sleep(interval)


for _command in deploy_ops.COMMANDS:
    deploy.add_command(_command)

COMMANDS = [deploy]
