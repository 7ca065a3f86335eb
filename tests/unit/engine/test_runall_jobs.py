"""``--jobs`` takes the values ``Runall-jobs:`` takes (item 10)."""

from __future__ import annotations

import pytest

from dervish_engine import cli
from dervish_engine.config import load_master
from dervish_engine.errors import ConfigError


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_bad_jobs_option_is_a_usage_error(tmp_path, capsys, value):
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{tmp_path}\n")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(master), "runall", "--jobs", value])
    assert exc.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err


def test_runall_jobs_zero_is_rejected_the_same_way(tmp_path):
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{tmp_path}\nRunall-jobs: 0\n")
    with pytest.raises(ConfigError, match="expected a whole number >= 1"):
        load_master(master)
