"""``python -m dervish_engine``: the ``dervish`` command."""

from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
