"""``mlpilot demo``: the guided tour on the embedded store (or any --url)."""

from __future__ import annotations

import click

from mlpilot.cli.context import client, url_option


@click.command("demo")
@click.option("--rows", type=click.IntRange(1_000, 5_000_000), default=20_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@url_option
def demo(rows: int, seed: int, url: str | None) -> None:
    """Run the whole loop on generated churn data: features, training, serving by customer id, monitoring,
    retraining, a gated canary, the automatic rollback of a planted broken version, and parity.

    Steps that need the embedded store (monitoring, retraining, the rollouts) are skipped with --url.
    """
    try:
        import pandas  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        from mlpilot.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "scikit-learn", "sklearn") from exc
    from mlpilot.demo.tour import run_demo

    run_demo(client(url), rows=rows, seed=seed)


COMMANDS = [demo]
