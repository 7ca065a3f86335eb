"""runall: entries of one vault do not collide (item 8); no per-attempt noise off a terminal (item 10)."""

from __future__ import annotations

from dervish_engine.summary import parse_summary


def hist_images(vault, branch="default"):
    path = vault / "dirvish" / f"{branch}.hist"
    return [line.split("\t")[0] for line in path.read_text().splitlines()[1:]] if path.exists() else []


def test_two_branches_of_one_vault_in_one_run(bank, small_tree):
    vault = bank.vault("p1", small_tree)
    bank.vault("p1", small_tree, branch="weekly")
    bank.runall = ["p1", "p1:weekly"]
    bank.master_extra = "image-default: %Y%m%d\n"
    bank.write_master()
    proc = bank.run("runall", check=0)
    (day,) = hist_images(vault)
    assert hist_images(vault, "weekly") == [f"{day}-weekly"]
    assert parse_summary((vault / f"{day}-weekly" / "summary").read_text()).branch == "weekly"
    assert f"image {day} belongs to branch default: this image is {day}-weekly" in proc.stderr
    # the same branch again on the same day is still refused: a daily pattern means one image a day
    again = bank.run("image", "p1")
    assert again.returncode == 2 and f"image {day} already exists" in again.stderr


def test_an_explicit_image_name_is_never_changed(bank, small_tree):
    vault = bank.vault("p1", small_tree)
    bank.vault("p1", small_tree, branch="weekly")
    bank.run("image", "p1", "--image", "x", check=0)
    proc = bank.run("image", "p1:weekly", "--image", "x")
    assert proc.returncode == 2 and "image x already exists" in proc.stderr
    assert hist_images(vault, "weekly") == []


def test_runall_off_a_terminal_prints_no_per_attempt_progress(bank, small_tree):
    bank.vault("p1", small_tree)
    bank.runall = ["p1"]
    bank.write_master()
    proc = bank.run("runall", check=0)
    assert "rsync attempt" not in proc.stdout + proc.stderr
    assert proc.stdout.count("\n") == 2  # "p1 started", "p1 done (success)"
