"""A bare-metal restore on the backup server: choose the images, plan, check the target, rebuild.

``prepare(master, vaults, spec, device, confirm, ...)`` chooses one good image per vault (``spec``:
whatever ``select.select_image`` accepts: ``latest``, an image name, a date, ``3 days ago``), reads
the restore metadata of the image of the vault that holds ``/`` (else of the first chosen image that
has metadata), builds the ``DiskPlan`` and runs ``disk_guard.check_target``: all read-only, so check mode stops there.
``Prepared.run(log)`` then rebuilds the target.

Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import disk_guard, disk_plan, disk_rebuild, select
from .config import MasterConfig, find_vault_dir
from .errors import DervishError
from .summary import read_summary


@dataclass(frozen=True)
class ChosenImage:
    vault: str
    image: str
    path: Path
    tree: str                      # the client path the vault backs up
    excludes: List[str]

    @property
    def has_metadata(self) -> bool:
        return (self.path / "metadata" / "metadata.json").is_file()


def choose_image(vault_dir: Path, spec: str) -> Path:
    """The image directory ``spec`` names in ``vault_dir``, by the engine's one image-selection rule."""
    return Path(select.select_image(vault_dir, spec).path)


def chosen_images(master: MasterConfig, vaults: Sequence[str], spec: str) -> List[ChosenImage]:
    out = []
    for vault in vaults:
        vault_dir = find_vault_dir(master, vault)
        path = choose_image(vault_dir, spec)
        summary = read_summary(path / "summary")
        if summary is None or not summary.tree:
            raise DervishError(f"image {path}: its summary names no tree; cannot tell where it goes")
        tree = summary.tree.split(":", 1)[1] if ":" in summary.tree else summary.tree
        out.append(ChosenImage(vault=vault, image=path.name, path=path, tree=tree or "/",
                               excludes=list(summary.excludes)))
    return out


@dataclass
class Prepared:
    plan: disk_plan.DiskPlan
    target: disk_guard.TargetDisk
    images: List[ChosenImage]

    def run(self, log: Callable[[str], None]) -> disk_rebuild.RebuildResult:
        return disk_rebuild.rebuild(self.plan, self.target.path, log)

    def images_dict(self) -> Dict[str, str]:
        return {image.vault: image.image for image in self.images}


def prepare(master: MasterConfig, vaults: Sequence[str], spec: str, device: str, confirm: Optional[str],
            facts: disk_guard.ServerFacts, disk: Optional[str] = None, grow_last_partition: bool = False,
            boot_loader: str = "auto", confirm_variable: str = "confirm") -> Prepared:
    if not vaults:
        raise DervishError("no vaults to restore from")
    images = chosen_images(master, vaults, spec)
    with_metadata = [image for image in images if image.has_metadata]
    if not with_metadata:
        names = ", ".join(f"{i.vault}/{i.image}" for i in images)
        raise DervishError(f"none of the chosen images has restore metadata ({names}); "
                           "choose images made with metadata (their summary says 'Metadata: ok')")
    source = next((image for image in with_metadata if os.path.normpath(image.tree) == "/"), with_metadata[0])
    metadata_dir = str(source.path / "metadata")
    data = disk_plan.load_metadata(metadata_dir)
    plan = disk_plan.build_plan(
        data,
        [disk_plan.VaultSource(vault=i.vault, tree=i.tree, image_tree=str(i.path / "tree"), excludes=tuple(i.excludes))
         for i in images],
        image=f"{source.vault}/{source.image}", disk=disk, grow_last_partition=grow_last_partition,
        boot_loader=boot_loader)
    target = disk_guard.check_target(device, confirm, plan.disk_bytes, facts, confirm_variable=confirm_variable)
    missing = disk_rebuild.missing_for(plan)
    if missing:
        raise DervishError(f"this server cannot rebuild {device} from {plan.image}: it lacks " + "; ".join(missing))
    return Prepared(plan=plan, target=target, images=images)
