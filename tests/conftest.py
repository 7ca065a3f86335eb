"""Test-wide set-up: the repo as the collection ``dervish.backup``, and the lab fixture."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS_PATH = REPO_ROOT / "collections"

# `make venv` links collections/ansible_collections/dervish/backup -> repo root; tests import
# plugins as ansible_collections.dervish.backup.plugins.* exactly as ansible-core does.
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from lab import Lab  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_image_slots(tmp_path_factory) -> Iterator[None]:
    """Images made on this machine take their slots in a directory of this session, not in the
    machine's /run/lock/dervish-slots, which other test runs and real backups share."""
    old = os.environ.get("DERVISH_SLOT_DIR")
    os.environ["DERVISH_SLOT_DIR"] = str(tmp_path_factory.mktemp("dervish-slots"))
    yield
    if old is None:
        os.environ.pop("DERVISH_SLOT_DIR", None)
    else:
        os.environ["DERVISH_SLOT_DIR"] = old


def _worker_lab_settings() -> None:
    """Under pytest-xdist each worker gets a lab of its own: worker N takes the Nth address range of
    DERVISH_TEST_LAB_NETS and a state dir beside DERVISH_TEST_LAB_DIR. It is written back into
    DERVISH_TEST_LAB_NET/DIR, which every test that starts a lab or names its addresses reads."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    index = int(worker.removeprefix("gw"))
    nets = [n for n in os.environ.get("DERVISH_TEST_LAB_NETS", "").split(",") if n]
    if index >= len(nets):
        raise pytest.UsageError(
            f"pytest-xdist worker {worker} has no lab address range: DERVISH_TEST_LAB_NETS={','.join(nets)!r} "
            f"names {len(nets)}; expected one range (e.g. 127.0.12) per worker (-n)")
    base_dir = Path(os.environ.get("DERVISH_TEST_LAB_DIR", REPO_ROOT / ".lab-test"))
    os.environ["DERVISH_TEST_LAB_NET"] = nets[index]
    os.environ["DERVISH_TEST_LAB_DIR"] = f"{base_dir}-{worker}"


def pytest_configure(config) -> None:
    _worker_lab_settings()


# Integration files that take minutes, longest first. A scheduling hint only: pytest-xdist hands out
# files in collection order, so starting these first keeps one worker from running the longest file
# alone at the end (with --no-loadscope-reorder, which keeps this order). Any order is correct: every
# file provisions what it needs; a file missing here just runs in its usual place.
LONGEST_FIRST = (
    "integration/site/test_bare_metal_restore.py",
    "integration/restore/test_restore_playbook.py",
    "integration/site/test_prepare_drive.py",
    "integration/site/test_monitor_textfile_and_timer.py",
    "integration/site/test_backup_faults.py",
    "integration/site/test_drive_holds.py",
    "integration/site/test_backup_playbook.py",
    "integration/metadata/test_nightly_metadata.py",
    "integration/site/test_site.py",
    "integration/site/test_nightly_hardening.py",
    "integration/boot/test_sysdisk_host.py",
    "integration/boot/test_bootdisk.py",
)


def _start_rank(item) -> int:
    path = item.path.as_posix()
    for rank, suffix in enumerate(LONGEST_FIRST):
        if path.endswith(suffix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(session, config, items) -> None:
    items.sort(key=_start_rank)  # stable: tests keep their order within a file and among the rest


SESSION_LAB = pytest.StashKey[Lab]()


@pytest.fixture(scope="session")
def lab(request) -> Iterator[Lab]:
    """A running lab for the whole session, separate from the user's `make lab-up` lab.

    DERVISH_TEST_LAB_DIR / DERVISH_TEST_LAB_NET choose its state dir and address range. A lab that
    was already running is reused and left running; one started here is stopped at the end.
    """
    the_lab = Lab(
        dir=Path(os.environ.get("DERVISH_TEST_LAB_DIR", REPO_ROOT / ".lab-test")),
        net=os.environ.get("DERVISH_TEST_LAB_NET", "127.0.12"),
    )
    was_up = the_lab.is_up()
    the_lab.up()
    request.session.stash[SESSION_LAB] = the_lab
    yield the_lab
    del request.session.stash[SESSION_LAB]
    if not was_up:
        the_lab.down()


# What a file may leave on the session lab's server that changes how the next file's runs behave: drive
# holds (a killed run's hold stays live for backup_server_drive_hold_grace, 15 min, and keeps the drive
# mounted), the drive mounted by hand, and the wrapper's record that it mounted the drive.
DRIVE_RESET = ("rm -rf /run/dervish/holds/*; if mountpoint -q /backup; then umount /backup; fi; "
               "rm -f /run/dervish-backup.mounted")


@pytest.fixture(scope="module", autouse=True)
def drive_left_as_found(request) -> Iterator[None]:
    """Each test file hands the next one (on the same worker's lab) a server whose drive nobody holds and
    nothing has mounted, whatever order the files run in."""
    yield
    the_lab = request.session.stash.get(SESSION_LAB, None)
    if the_lab is not None and the_lab.is_up():
        the_lab.ssh(the_lab.server, DRIVE_RESET, check=False, timeout=60)
