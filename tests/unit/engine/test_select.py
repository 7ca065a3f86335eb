"""select_image: latest, names, dates, relative times; failed and interrupted images never chosen."""

from __future__ import annotations

from datetime import datetime

import pytest

from dervish_engine.errors import DervishError
from dervish_engine.select import SelectError, image_tree, select_image

NOW = datetime(2026, 12, 3, 12, 0, 0)


def make(vault, name, begin, status="success", complete=True, tree=True):
    """An image directory as the engine leaves it; ``begin`` is its image time and Backup-begin."""
    img = vault / name
    img.mkdir(parents=True)
    text = (f"vault: {vault.name}\nbranch: default\nImage: {name}\nImage-now: {begin}\nExpire: Never\n\n"
            f"ACTION: rsync\nBackup-begin: {begin}\n")
    if complete:
        text += f"Backup-complete: {begin}\n"
    if status is not None:
        text += f"Status: {status}\n"
    (img / "summary").write_text(text)
    if tree:
        (img / "tree").mkdir()
    return img


@pytest.fixture
def vault(tmp_path):
    v = tmp_path / "bank" / "laptop1-home"
    (v / "dirvish").mkdir(parents=True)
    make(v, "2026-11-29_04:00", "2026-11-29 04:00:00")
    make(v, "2026-11-30_04:00", "2026-11-30 04:00:00", status="warning (24) -- file vanished on sender")
    make(v, "2026-12-01_04:00", "2026-12-01 04:00:00")
    make(v, "2026-12-01_14:00", "2026-12-01 14:00:00", status="error (23) -- partial transfer")
    make(v, "2026-12-02_04:00", "2026-12-02 04:00:00", status=None, complete=False)  # interrupted
    make(v, "2026-12-03_04:00", "2026-12-03 04:00:00", status="error -- interrupted")
    return v


def name(vault, spec, **kw):
    return select_image(vault, spec, now=NOW, **kw).name


def test_latest_is_the_newest_good_image_never_a_failed_or_interrupted_one(vault):
    assert name(vault, "latest") == name(vault, "") == "2026-12-01_04:00"
    assert select_image(vault, now=NOW).name == "2026-12-01_04:00"


def test_an_image_name_must_be_good_unless_allowed(vault):
    assert name(vault, "2026-11-30_04:00") == "2026-11-30_04:00"  # a warning image is good
    with pytest.raises(SelectError) as err:
        name(vault, "2026-12-01_14:00")
    text = str(err.value)
    assert str(vault) in text and "'2026-12-01_14:00'" in text and "not a good image (error (23)" in text
    assert "2026-12-01_04:00, 2026-11-30_04:00, 2026-11-29_04:00" in text  # newest first
    assert name(vault, "2026-12-01_14:00", allow_bad=True) == "2026-12-01_14:00"
    with pytest.raises(SelectError, match="interrupted or still running"):
        name(vault, "2026-12-02_04:00")


def test_a_date_is_that_day_and_a_time_the_newest_image_begun_by_then(vault):
    assert name(vault, "2026-12-01") == "2026-12-01_04:00"  # the failed 14:00 image is skipped
    assert name(vault, "2026-11-30") == "2026-11-30_04:00"
    assert name(vault, "2026-12-01 03:59") == "2026-11-30_04:00"
    assert name(vault, "2026-12-01 04:00") == "2026-12-01_04:00"  # at or before
    assert name(vault, "20261130") == "2026-11-30_04:00"
    assert name(vault, "2026-12-25") == "2026-12-01_04:00"


def test_relative_times_count_back_from_now(vault):
    assert name(vault, "3 days ago") == "2026-11-30_04:00"  # 2026-11-30 12:00
    assert name(vault, "-3 days") == name(vault, "-3d") == "2026-11-30_04:00"
    assert name(vault, "-60h") == "2026-11-30_04:00"
    assert name(vault, "-4d") == "2026-11-29_04:00"
    with pytest.raises(SelectError, match="no good image began at or before 2026-11-26 12:00:00"):
        name(vault, "-1w")
    # yesterday is 2026-12-02: the newest good image begun by then is 2026-12-01_04:00
    assert name(vault, "yesterday 22:00") == "2026-12-01_04:00"


def test_nothing_old_enough_names_the_vault_the_spec_and_the_good_images(vault):
    with pytest.raises(SelectError) as err:
        name(vault, "2026-11-01")
    assert isinstance(err.value, DervishError)
    assert "no good image began at or before 2026-11-01 23:59:59" in str(err.value)
    assert err.value.good == ["2026-12-01_04:00", "2026-11-30_04:00", "2026-11-29_04:00"]


def test_an_unreadable_spec_is_one_clear_error(vault):
    for spec in ("last tuesday", "../x", "2026-13-45", "-3m"):
        with pytest.raises(SelectError, match="is neither an image of the vault nor a time"):
            name(vault, spec)


def test_a_vault_without_good_images_or_missing(tmp_path):
    v = tmp_path / "v"
    (v / "dirvish").mkdir(parents=True)
    make(v, "bad", "2026-12-01 04:00:00", status="error (12)")
    make(v, "notree", "2026-12-01 05:00:00", tree=False)
    with pytest.raises(SelectError, match="no good image to restore from; it has no good image"):
        name(v, "latest")
    with pytest.raises(SelectError, match="has no tree/"):
        name(v, "notree")
    with pytest.raises(SelectError, match="does not exist"):
        name(tmp_path / "nope", "latest")


def test_more_good_images_than_shown_are_counted(tmp_path):
    v = tmp_path / "v"
    for day in range(1, 10):
        make(v, f"2026-11-0{day}", f"2026-11-0{day} 04:00:00")
    with pytest.raises(SelectError) as err:
        name(v, "2026-10-01")
    assert "2026-11-09, 2026-11-08, 2026-11-07, 2026-11-06, 2026-11-05 (and 4 older)" in str(err.value)


def test_newest_is_by_image_time_as_expire_orders(tmp_path):
    v = tmp_path / "v"
    make(v, "a", "2026-12-02 04:00:00")
    late = make(v, "b", "2026-11-01 04:00:00")  # made late with an old --image-time
    (late / "summary").write_text((late / "summary").read_text().replace(
        "Backup-complete: 2026-11-01 04:00:00", "Backup-complete: 2026-12-03 04:00:00"))
    assert name(v, "latest") == "a"


def test_image_tree(vault):
    image = select_image(vault, now=NOW)
    assert image_tree(image) == vault / "2026-12-01_04:00" / "tree"
