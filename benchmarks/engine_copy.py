"""The engine as a backup server runs it, for the benchmarks that time the ``dervish`` command: its own
copy, compiled once by the interpreter that will run it (a server's python3 caches the bytecode on the
first run; this machine's ``PYTHONDONTWRITEBYTECODE`` would make every timed run compile the engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "plugins" / "module_utils" / "dervish_engine"
# the interpreter of the server's installed dervish command (#!/usr/bin/python3); a venv's starts slower
SERVER_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def compiled_engine(lib: Path, python: str) -> dict:
    """Copy the engine into ``lib``, compile it with ``python``; the environment that runs it from there."""
    shutil.copytree(ENGINE, lib / "dervish_engine", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([python, "-m", "compileall", "-q", str(lib)], check=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(lib)
    return env
