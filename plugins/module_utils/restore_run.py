# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The id of a controller's restore run, and whether such a run is over (for cleaning up after a killed run).

An id is ``<controller host>.<ansible-playbook pid>.<its start time in clock ticks>``: the same for
every task of one run, and never the id of a later process that got the same pid. Only the
controller can tell whether a run is still going; the one-time keys also carry an expiry that sshd
and the cleanups honour, for runs of other controllers.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Optional

RUN_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,60}\.\d{1,10}\.\d{1,20}$")


def _host(hostname: Optional[str] = None) -> str:
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    return re.sub(r"[^A-Za-z0-9-]", "-", host)[:60] or "controller"


def start_ticks(pid: int) -> Optional[int]:
    """The process's start time (``/proc/PID/stat`` field 22), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    try:
        return int(text[text.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def run_id(pid: Optional[int] = None, hostname: Optional[str] = None) -> str:
    """This controller run's id; a worker's parent is the ansible-playbook process."""
    pid = os.getppid() if pid is None else pid
    return f"{_host(hostname)}.{pid}.{start_ticks(pid) or 0}"


def is_over(rid: str, hostname: Optional[str] = None) -> bool:
    """True when ``rid`` is a run of this controller whose process is gone (or is another process now)."""
    if not RUN_ID_RE.match(rid):
        return False
    host, pid, ticks = rid.split(".")
    if host != _host(hostname):
        return False
    return start_ticks(int(pid)) != int(ticks)
