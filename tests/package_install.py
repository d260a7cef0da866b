"""Installing a plugin package the way its users would, into a directory of the test's own.

``pip install --target`` writes the package and its ``.dist-info`` (entry points included)
into that directory; a process started with it on ``PYTHONPATH`` finds the plugin through
``importlib.metadata``, exactly as it finds one installed into site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def pip_install_target(project: Path, target: Path) -> Path:
    """Install ``project`` (a directory with a pyproject.toml) into ``target``; no network.

    The project is copied first, because pip builds a local directory in place and would
    leave ``build/`` and ``*.egg-info`` in the source tree.
    """
    work = target.parent / f"{project.name}-src"
    shutil.copytree(project, work, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(target), str(work)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    return target


def env_with_path(*paths: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with ``paths`` in front of ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    parts = [str(p) for p in paths]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def env_without_path() -> dict[str, str]:
    """The environment without ``PYTHONPATH``: only what is really installed is visible."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def leadhub(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``leadhub`` command line in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=env,
        cwd=cwd, timeout=120,
    )
