"""What a run records about where it ran: code version (git commit, dirty flag), user, entry point, packages.

Captured once per process and folder: the code a process runs does not change under it, and asking ``git`` and
``importlib.metadata`` on every run would cost milliseconds per run for the same answer.

>>> env = python_environment()
>>> sorted(env)
['packages', 'platform', 'python']
"""

from __future__ import annotations

import functools
import getpass
import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GitInfo", "current_user", "entry_point", "git_info", "python_environment"]

_GIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class GitInfo:
    commit: str
    dirty: bool


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 - git is looked up on PATH on purpose; args are ours
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.cache
def git_info(folder: Path) -> GitInfo | None:
    """Commit and dirty flag of the git work tree holding ``folder``; None outside one or without git."""
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return GitInfo(commit=commit.strip(), dirty=bool(status and status.strip()))


def entry_point() -> str | None:
    """The script the process runs (absolute), or None in an interactive session."""
    script = sys.argv[0] if sys.argv else ""
    if not script or script in ("-c", "-m", "-"):
        return None
    return os.path.abspath(script)


def code_folder() -> Path:
    """Where the running code lives: the entry script's folder, else the working directory."""
    script = entry_point()
    if script is not None and os.path.isfile(script):
        return Path(script).parent
    return Path.cwd()


def current_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER variable, as in some containers
        return None


@functools.cache
def python_environment() -> dict[str, Any]:
    """Python version, platform and installed distributions (name -> version)."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            packages[str(name).lower()] = dist.version
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": dict(sorted(packages.items())),
    }
