"""Choose an image of a vault: the one selection rule of restore, ``dervish versions/restore`` and the
bare-metal and drive playbooks.

``select_image(vault_dir, spec)`` takes

* ``latest`` (or empty): the newest good image (by image time, as ``expire`` orders them);
* an image name (a directory of the vault, e.g. ``2026-12-01_02:00``): that image, which must be good
  unless ``allow_bad=True``; a name wins over the readings below;
* a date or time (``2026-12-01``, ``2026-12-01 14:00``, ``20261201``, ``yesterday 22:00``, ...): the newest
  good image that began at or before it; a date without a time means the end of that day, so
  ``2026-12-01`` is "the image of that day" (the last one that began on it, or the newest before it);
* a relative time (``3 days ago``, ``-3 days``, ``-3d``, ``-12h``, ``-2w``): the same, counted back from
  ``now``.

Times are read by :func:`timespec.parse_image_time`, the parser of ``--image-time``. An image is *good*
when its summary says success or a warning, it has ``Backup-complete`` and a ``tree/`` (the rule of
``expire``); failed or interrupted images are never chosen. Errors are :class:`SelectError` naming the
vault and the spec and listing the newest good images there are.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import List, Optional

from .errors import ConfigError, ImageError
from .expire import ImageInfo, read_image
from .timespec import parse_image_time, parse_time

LATEST = "latest"
SHOWN = 5  # good images named in an error
_DATE_ONLY = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{8})\s*$")


class SelectError(ImageError):
    """No image of the vault matches the spec (or the vault has no good image, or the spec is unreadable)."""

    def __init__(self, vault_dir, spec: str, why: str, good: List[ImageInfo]):
        self.vault_dir = str(vault_dir)
        self.spec = spec
        self.good = [im.name for im in good]
        names = ", ".join(self.good[:SHOWN]) + (f" (and {len(self.good) - SHOWN} older)" if len(good) > SHOWN else "")
        there = f"its good images, newest first: {names}" if good else "it has no good image"
        super().__init__(f"vault {vault_dir}: image {spec!r}: {why}; {there}")


def began(image: ImageInfo) -> datetime:
    """When the image's backup began (``Backup-begin``), else its image time."""
    s = image.summary
    return (parse_time(s.backup_begin) if s else None) or image.created or datetime.min


def images(vault_dir) -> List[ImageInfo]:
    """Every image of the vault (good or not), oldest first by image time."""
    vault_dir = Path(vault_dir)
    found = []
    for entry in sorted(vault_dir.iterdir()):
        if entry.name == "dirvish" or entry.is_symlink() or not entry.is_dir():
            continue
        image = read_image(entry)
        if image.summary is not None:
            found.append(image)
    found.sort(key=ImageInfo.sort_key)
    return found


def good_images(vault_dir) -> List[ImageInfo]:
    """The good images of the vault, newest first."""
    return [im for im in reversed(images(vault_dir)) if im.good]


def _named(vault_dir: Path, spec: str) -> Optional[ImageInfo]:
    if spec in ("", ".", "..", "dirvish") or "/" in spec or "\0" in spec:
        return None
    path = vault_dir / spec
    if not path.is_dir() or path.is_symlink():
        return None
    image = read_image(path)
    return image if image.summary is not None or image.has_tree else None


def point_in_time(spec: str, now: datetime) -> datetime:
    """The time a date/relative spec names; a bare date is the end of that day. ``ConfigError`` if unreadable."""
    text = spec.strip().lower()
    if re.fullmatch(r"-\s*\d+\s*[dhwy]", text):  # -3d: the short form operators type
        number, unit = int(text[1:-1]), text[-1]
        text = f"{number} {dict(d='days', h='hours', w='weeks', y='years')[unit]} ago"
    when = parse_image_time(text, now)
    if _DATE_ONLY.match(text):
        when = when + timedelta(days=1) - timedelta(seconds=1)
    return when


def select_image(vault_dir, spec: str = LATEST, now: Optional[datetime] = None,
                 allow_bad: bool = False) -> ImageInfo:
    """The image ``spec`` names in ``vault_dir`` (see the module docstring); ``SelectError`` otherwise."""
    vault_dir = Path(vault_dir)
    spec = LATEST if spec is None else str(spec)
    if not vault_dir.is_dir():
        raise SelectError(vault_dir, spec, "the vault does not exist (is the backup drive mounted?)", [])
    good = good_images(vault_dir)
    if spec.strip().lower() in ("", LATEST):
        if not good:
            raise SelectError(vault_dir, spec, "no good image to restore from", good)
        return good[0]
    named = _named(vault_dir, spec.strip())
    if named is not None:
        if named.good or allow_bad:
            return named
        state = named.status or "no Status: interrupted or still running"
        why = "has no tree/" if not named.has_tree else f"is not a good image ({state})"
        raise SelectError(vault_dir, spec, f"image {named.name} {why}", good)
    try:
        when = point_in_time(spec, now or datetime.now())
    except ConfigError:
        raise SelectError(vault_dir, spec, "is neither an image of the vault nor a time (expected 'latest', an "
                                           "image name, 'YYYY-MM-DD [HH:MM]', 'N days ago' or '-3d')", good) from None
    before = [im for im in good if began(im) <= when]
    if not before:
        raise SelectError(vault_dir, spec, f"no good image began at or before {when:%Y-%m-%d %H:%M:%S}", good)
    return max(before, key=lambda im: (began(im), im.sort_key()))


def image_tree(image: ImageInfo) -> Path:
    """The image's ``tree/``: what the client's tree looked like."""
    return Path(image.path) / "tree"
