"""Image names are checked like vault and branch names, wherever they come from (item 1)."""

from __future__ import annotations

import pytest

from dervish_engine import cli
from dervish_engine.config import check_vault_file, load_master, load_vault
from dervish_engine.errors import ConfigError


@pytest.fixture
def master(tmp_path):
    bank = tmp_path / "bank"
    src = tmp_path / "src"
    src.mkdir()
    (bank / "v1" / "dirvish").mkdir(parents=True)
    (bank / "v1" / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\n")
    path = tmp_path / "master.conf"
    path.write_text(f"bank:\n\t{bank}\n")
    return path


BAD_NAMES = ["a\nb", "#x", "a\tb", "a b", "-x", "x\x7fy", "."]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_image_option_with_a_bad_name_is_refused_before_anything_is_created(master, capsys, name):
    bank = master.parent / "bank"
    code = cli.main(["--config", str(master), "image", "v1", f"--image={name}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "invalid image name" in err
    assert sorted(p.name for p in (bank / "v1").iterdir()) == ["dirvish"]
    assert sorted(p.name for p in (bank / "v1" / "dirvish").iterdir()) == ["default.conf"]


@pytest.mark.parametrize("pattern", ["%Y%n%d", "%Y%t%d", "-%Y", "%Y %m"])
def test_image_pattern_that_makes_a_bad_name_is_a_config_error_at_load(master, pattern):
    conf = master.parent / "bank" / "v1" / "dirvish" / "default.conf"
    conf.write_text(conf.read_text() + f"image: {pattern}\n")
    with pytest.raises(ConfigError, match=r"default\.conf:3: invalid image name") as exc:
        load_vault(load_master(master), "v1")
    assert "image:" in str(exc.value)
    with pytest.raises(ConfigError, match="invalid image name"):
        check_vault_file(conf)


def test_image_default_in_the_master_is_checked_too(master):
    master.write_text(master.read_text() + "image-default: %Y%m%d%n\n")
    with pytest.raises(ConfigError, match=r"master\.conf:3: invalid image name"):
        load_master(master)


@pytest.mark.parametrize("name", ["20261203", "2026-12-03_12:00", "daily.%Y%m%d", "x_y+z"])
def test_ordinary_image_names_still_work(master, name):
    conf = master.parent / "bank" / "v1" / "dirvish" / "default.conf"
    conf.write_text(conf.read_text() + f"image: {name}\n")
    assert load_vault(load_master(master), "v1").image == name


def test_reference_may_name_an_image_with_a_colon_but_not_a_bad_name(master):
    m = load_master(master)
    assert load_vault(m, "v1", overrides={"reference": "2026-12-03_12:00"}).reference == "2026-12-03_12:00"
    with pytest.raises(ConfigError, match="invalid reference name"):
        load_vault(m, "v1", overrides={"reference": "#x"})
