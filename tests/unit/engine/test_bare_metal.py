"""bare_metal.prepare: images chosen per vault, the metadata of the vault holding /, the guard last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_disk_plan import META

from dervish_engine import bare_metal, disk_guard
from dervish_engine.config import MasterConfig
from dervish_engine.disk_guard import TargetRefused
from dervish_engine.errors import DervishError


def image(bank: Path, vault: str, name: str, tree: str, metadata: bool, excludes=()) -> Path:
    img = bank / vault / name
    (img / "tree").mkdir(parents=True)
    stamp = f"{name[:4]}-{name[4:6]}-{name[6:8]} {name[8:10]}:{name[10:12]}:{name[12:14]}"
    lines = ["client: c1", f"tree: {tree}", f"vault: {vault}", "branch: default", f"Image: {name}",
             f"Image-now: {stamp}"]
    if excludes:
        lines += ["exclude:"] + [f"\t{e}" for e in excludes]
    lines += [f"Backup-begin: {stamp}", f"Backup-complete: {stamp}", "Status: success"]
    (img / "summary").write_text("\n".join(lines) + "\n")
    if metadata:
        (img / "metadata").mkdir()
        (img / "metadata" / "metadata.json").write_text(json.dumps(META))
    return img


@pytest.fixture
def master(tmp_path) -> MasterConfig:
    bank = tmp_path / "bank"
    image(bank, "c1-root", "20261201020000", "/", True, excludes=("/spare/",))
    image(bank, "c1-root", "20261202020000", "/", True, excludes=("/spare/",))
    image(bank, "c1-data", "20261202020500", "/srv/data", False)
    return MasterConfig(path=tmp_path / "master.conf", confdir=tmp_path, banks=[bank])


def test_the_plan_comes_from_the_newest_images_and_the_root_vaults_metadata(master):
    with pytest.raises(TargetRefused, match=r"^target /dev/dervish-none: No such file"):
        bare_metal.prepare(master, ["c1-data", "c1-root"], "latest", "/dev/dervish-none", "/dev/dervish-none",
                           disk_guard.ServerFacts())
    images = bare_metal.chosen_images(master, ["c1-data", "c1-root"], "latest")
    assert [(i.vault, i.image, i.tree, i.excludes) for i in images] == [
        ("c1-data", "20261202020500", "/srv/data", []), ("c1-root", "20261202020000", "/", ["/spare/"])]


def test_an_older_image_by_date(master):
    images = bare_metal.chosen_images(master, ["c1-root"], "2026-12-01")
    assert images[0].image == "20261201020000"


def test_images_without_metadata_are_refused_by_name(master):
    with pytest.raises(DervishError, match=r"^none of the chosen images has restore metadata \(c1-data/2026"):
        bare_metal.prepare(master, ["c1-data"], "latest", "/dev/sdz", "/dev/sdz", disk_guard.ServerFacts())
