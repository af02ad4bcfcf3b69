"""``python -m mlpilot.cli`` runs the command line."""

from __future__ import annotations

from mlpilot.cli.main import main

main()
