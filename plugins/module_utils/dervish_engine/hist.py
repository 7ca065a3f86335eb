"""``<vault>/dirvish/<branch>.hist``: one tab-separated line per good image, Dirvish format.

Byte-compatible with Dirvish 1.2.1, including the header typo ``REFERECE``::

    #IMAGE<TAB>CREATED<TAB>REFERECE<TAB>EXPIRES
    20261126-122414<TAB>2026-11-26 12:24:14<TAB>default<TAB>+15 days == 2026-12-11 12:24:14
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import List

from .confgrammar import read_text_file

HEADER = "#IMAGE\tCREATED\tREFERECE\tEXPIRES\n"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class HistEntry:
    image: str
    created: str
    reference: str
    expires: str


def hist_path(vault_dir, branch: str) -> Path:
    return Path(vault_dir) / "dirvish" / (f"{branch}.hist")


def format_line(image: str, created: datetime, reference: str, expires: str) -> str:
    return f"{image}\t{created.strftime(TIME_FORMAT)}\t{reference}\t{expires}\n"


def append(path, image: str, created: datetime, reference: str, expires: str) -> None:
    """Append one line; write the header first when the file is missing or empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        text = format_line(image, created, reference, expires)
        if fh.tell() == 0:
            text = HEADER + text
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def parse(text: str) -> List[HistEntry]:
    """Parse hist text; comment/blank/malformed lines are skipped (missing fields become "")."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        fields += [""] * (4 - len(fields))
        entries.append(HistEntry(fields[0].strip(), fields[1], fields[2], fields[3]))
    return entries


def read(path) -> List[HistEntry]:
    """Entries of a hist file in file (= creation) order; [] when it does not exist.

    ``ConfigError`` naming the file when it is not a regular file or cannot be read.
    """
    text = read_text_file(path, "hist file", missing_ok=True)
    return [] if text is None else parse(text)
