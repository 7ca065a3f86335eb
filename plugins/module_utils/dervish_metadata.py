"""dervish-metadata: collect what is needed to rebuild a client's disks before restoring its trees.

One implementation for two callers: the module ``dervish.backup.host_metadata`` and the program
``dervish-metadata`` that the client's gate allows for the nightly run (the role deploys this file
with a ``#!/usr/bin/python3`` line prepended), so both produce exactly the same collection.

Every item is collected by running a tool with a fixed argv (no shell, ``LC_ALL=C``, a timeout) or
by reading a file. Each item records its command (or the file read), exit code, output, stderr and
a status:

* ``ok``;
* ``failed``: the tool ran and exited non-zero (or timed out) -- the output is kept as evidence;
* ``skipped: tool missing``: the program is not installed (looked up in ``PATH`` and the sbin dirs);
* ``skipped: not present``: there is nothing of that kind here (no md arrays, no LVM, no EFI,
  no partition table on a disk, no debconf answer for grub-pc).

Skipped items are never errors.

Items (name -> how it is collected -> file in the layout; items without an output file are only in
``metadata.json``):

================  ==================================================================  ======================
item              collected with                                                      file in ``metadata/``
================  ==================================================================  ======================
lsblk             ``lsblk --json --bytes --output <LSBLK_COLUMNS>`` (tree of devices)  ``lsblk.json``
sfdisk/<disk>     ``sfdisk --dump /dev/<disk>`` for every disk (see below)            ``sfdisk/<disk>.dump``
blkid             ``blkid -c /dev/null`` (probed now, not blkid's cache)              ``blkid.txt``
df                ``df -P -T -l`` (local filesystems only: a hung NFS server must      ``df.txt``
                  not hang the nightly run; ``mounts`` has the network ones)
fstab             file ``/etc/fstab``                                                  ``fstab``
crypttab          file ``/etc/crypttab`` (dm-crypt devices opened at boot)             ``crypttab``
mounts            file ``/proc/self/mounts``                                          ``mounts``
swaps             file ``/proc/swaps``                                                ``swaps``
mdstat            file ``/proc/mdstat`` (absent: not present)                          ``mdstat``
mdadm             ``mdadm --detail --scan --verbose`` (mdadm.conf syntax)             ``mdadm.conf``
pvs, vgs, lvs     ``pvs|vgs|lvs --reportformat json --units b --nosuffix -o ...``     ``lvm.json`` (all three)
                  (``lvs -a``: hidden internal volumes too)
efibootmgr        ``efibootmgr -v`` (only when booted by EFI)                          ``efibootmgr.txt``
grub-pc           ``debconf-show grub-pc`` (the devices grub-install writes to)        ``debconf-grub-pc.txt``
boot              derived: firmware, grub devices, EFI entries (no command)           ``boot.json``
os-release        file ``/etc/os-release`` (or ``/usr/lib/os-release``)                ``os-release``
uname             ``uname -a``                                                         ``uname.txt``
hostname          file ``/proc/sys/kernel/hostname``                                  ``hostname``
packages          ``dpkg --get-selections`` (``dpkg --set-selections`` reads it back;   ``packages.txt``
                  ``rpm -qa`` without dpkg)
================  ==================================================================  ======================

``metadata.json`` holds everything for programs: ``{"format": 1, "collected_at": ..., "disks": [...],
"boot": {...}, "items": {name: {command, source, rc, status, output, stderr, data}}}`` where ``data``
is the parsed form (lsblk tree, fstab entries, md arrays, LVM reports, EFI entries, ...). It is also
exactly what ``dervish-metadata`` prints on stdout.

lsblk takes FSTYPE, UUID and LABEL from the udev database and does not probe when libudev answers,
so without udevd (containers, rescue systems) they are null: the parsed ``lsblk`` data then gets them
from ``blkid``'s probe (such devices are marked ``"filled_from": "blkid"``); ``lsblk.json`` stays
lsblk's own output.

Which block devices are disks: the top-level devices of ``lsblk`` with type ``disk`` and a non-zero
size, plus loop devices that carry a partition table (they have partitions as children). The second
rule is for the lab, where loop devices stand in for disks; a plain loop device (a mounted image
file) is not a disk. A disk without a partition table gets ``skipped: not present`` for its sfdisk
item, and so does a disk that lsblk lists but whose device node this system lacks (a container
sees its machine's disks in sysfs). The ``.dump`` file is sfdisk's output unchanged, so
``sfdisk /dev/<new disk> < <disk>.dump`` recreates the table (same label-id, partition UUIDs, types, starts and sizes).

Boot loader: the firmware is ``efi`` when ``/sys/firmware/efi`` exists, else ``bios``. The grub
device is taken from debconf's ``grub-pc/install_devices`` answer (Debian and Ubuntu record there
where grub-install writes on every grub upgrade), which is the authoritative place on those systems;
no guessing from MBR bytes or grubenv is done -- other distributions get ``skipped``. On EFI the
boot entries come from ``efibootmgr -v``.

The layout (one file per item plus ``metadata.json``, as ``<image>/metadata`` beside ``tree/``) is
written by ``dervish_engine/metadata_layout.py`` (``write_metadata_dir``), the one writer that both the
module's ``dest`` and the server's engine use; this file does not import it, so that it stays a single
file that runs on the client without the engine.

``dervish-metadata`` prints the collection and writes nothing (the server's engine writes the layout
into the image). Exit codes: 0 everything collected or skipped; 1 some item failed (the JSON is still
printed: partial metadata is better than none); 2 bad usage.

Stdlib only, Python 3.9+, no Ansible import.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

FORMAT_VERSION = 1
TIMEOUT = 120
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

OK = "ok"
FAILED = "failed"
TOOL_MISSING = "skipped: tool missing"
NOT_PRESENT = "skipped: not present"

LSBLK_COLUMNS = "NAME,KNAME,PATH,TYPE,SIZE,FSTYPE,UUID,PARTUUID,LABEL,PARTLABEL,PARTTYPE,MOUNTPOINT,PKNAME,RO,RM"
PVS_FIELDS = "pv_name,pv_uuid,vg_name,pv_fmt,pv_attr,pv_size,pv_free,dev_size,pe_start"
VGS_FIELDS = "vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,pv_count,lv_count"
LVS_FIELDS = "lv_name,lv_uuid,vg_name,lv_attr,lv_size,segtype,pool_lv,origin,lv_path,devices"

EXIT_OK = 0
EXIT_ITEM_FAILED = 1
EXIT_USAGE = 2


@dataclass
class Item:
    """One collected item: how it was obtained and what came out."""

    name: str
    status: str
    command: Optional[List[str]] = None
    source: Optional[str] = None
    rc: Optional[int] = None
    output: str = ""
    stderr: str = ""
    data: Any = None


@dataclass
class Collection:
    items: Dict[str, Item] = field(default_factory=dict)
    disks: List[str] = field(default_factory=list)
    boot: Dict[str, Any] = field(default_factory=dict)
    collected_at: str = ""

    def add(self, item: Item) -> Item:
        self.items[item.name] = item
        return item

    @property
    def failed(self) -> List[str]:
        return [name for name, item in self.items.items() if item.status == FAILED]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "collected_at": self.collected_at,
            "disks": list(self.disks),
            "boot": dict(self.boot),
            "items": {name: asdict(item) for name, item in self.items.items()},
        }


# ------------------------------------------------------------------------------------------ parsing
def flatten_lsblk(tree: Dict[str, Any]) -> List[Dict[str, Any]]:
    """All devices of an ``lsblk --json`` tree, parents before children, without ``children``."""
    out: List[Dict[str, Any]] = []

    def walk(devices: Sequence[Dict[str, Any]]) -> None:
        for dev in devices:
            out.append({k: v for k, v in dev.items() if k != "children"})
            walk(dev.get("children") or [])

    walk(tree.get("blockdevices") or [])
    return out


def _size(value: Any) -> int:
    # lsblk --bytes gives a number (2.33+) or a string of digits (older versions)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def disks_from_lsblk(tree: Dict[str, Any]) -> List[str]:
    """Kernel names of the whole disks: type ``disk`` with a size, or a loop device with partitions."""
    disks = []
    for dev in tree.get("blockdevices") or []:
        name = dev.get("kname") or dev.get("name")
        kind = dev.get("type")
        if not name or _size(dev.get("size")) == 0:
            continue
        has_parts = any(child.get("type") == "part" for child in dev.get("children") or [])
        if kind == "disk" or (kind == "loop" and has_parts):
            disks.append(name)
    return disks


BLKID_TO_LSBLK = {"TYPE": "fstype", "UUID": "uuid", "LABEL": "label", "PARTUUID": "partuuid", "PARTLABEL": "partlabel"}


def fill_from_blkid(tree: Dict[str, Any], blkid: Dict[str, Dict[str, str]]) -> List[str]:
    """Fill the filesystem columns that lsblk left empty from ``blkid``'s probe, in place.

    lsblk takes these columns from the udev database and does not probe when libudev answers, so on a
    host without udevd (containers, rescue systems) every FSTYPE, UUID and LABEL is null. Returns the
    paths of the devices that got values; they are marked ``"filled_from": "blkid"``.
    """
    filled = []

    def walk(devices: Sequence[Dict[str, Any]]) -> None:
        for dev in devices:
            tags = blkid.get(dev.get("path") or f"/dev/{dev.get('kname') or dev.get('name')}") or {}
            changed = False
            for tag, column in BLKID_TO_LSBLK.items():
                if dev.get(column) is None and tags.get(tag):
                    dev[column] = tags[tag]
                    changed = True
            if changed:
                dev["filled_from"] = "blkid"
                filled.append(dev.get("path") or dev.get("name"))
            walk(dev.get("children") or [])

    walk(tree.get("blockdevices") or [])
    return filled


def parse_key_values(text: str) -> Dict[str, str]:
    """``KEY=value`` lines with optional shell quotes (os-release)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def parse_blkid(text: str) -> Dict[str, Dict[str, str]]:
    """``/dev/x: UUID="..." TYPE="..."`` lines -> {device: {UUID: ..., TYPE: ...}}."""
    devices: Dict[str, Dict[str, str]] = {}
    for line in text.splitlines():
        if ": " not in line:
            continue
        dev, rest = line.split(": ", 1)
        tags: Dict[str, str] = {}
        i = 0
        while i < len(rest):
            eq = rest.find('="', i)
            if eq < 0:
                break
            key = rest[i:eq].strip()
            end = eq + 2
            value = []
            while end < len(rest) and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < len(rest):  # blkid escapes " and \ in values
                    end += 1
                value.append(rest[end])
                end += 1
            tags[key] = "".join(value)
            i = end + 1
        devices[dev] = tags
    return devices


def parse_table(text: str, names: Sequence[str]) -> List[Dict[str, str]]:
    """Whitespace-separated tables (fstab, /proc/mounts): comments and blank lines skipped."""
    rows = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        rows.append(dict(zip(names, words)))
    return rows


FSTAB_FIELDS = ("spec", "file", "vfstype", "mntopts", "freq", "passno")
SWAPS_FIELDS = ("filename", "type", "size", "used", "priority")


def parse_swaps(text: str) -> List[Dict[str, str]]:
    return parse_table("\n".join(text.splitlines()[1:]), SWAPS_FIELDS)


def parse_df(text: str) -> List[Dict[str, str]]:
    """``df -P -T`` (Filesystem Type 1024-blocks Used Available Capacity Mounted-on)."""
    rows = []
    for line in text.splitlines()[1:]:
        words = line.split(None, 6)
        if len(words) == 7:
            rows.append(dict(zip(("filesystem", "type", "blocks_1k", "used", "available", "capacity", "mounted_on"),
                                 words)))
    return rows


def parse_mdadm_scan(text: str) -> List[Dict[str, Any]]:
    """``mdadm --detail --scan [--verbose]``: ``ARRAY <dev> key=value ...`` lines, with indented
    continuation lines (``devices=/dev/sda1,/dev/sdb1`` under --verbose) belonging to the array above.
    """
    arrays: List[Dict[str, Any]] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "ARRAY" and not line[0].isspace():
            array: Dict[str, Any] = {"device": words[1] if len(words) > 1 and "=" not in words[1] else None}
            rest = words[2:] if array["device"] else words[1:]
            arrays.append(array)
        elif line[0].isspace() and arrays:
            array, rest = arrays[-1], words
        else:
            continue  # MAILADDR, DEVICE, HOMEHOST lines: not arrays
        for word in rest:
            if "=" in word:
                key, value = word.split("=", 1)
                array[key] = value.split(",") if key == "devices" else value
    return arrays


def parse_lvm_report(text: str, kind: str) -> List[Dict[str, str]]:
    """``pvs|vgs|lvs --reportformat json``: ``{"report": [{"pv": [...]}]}`` -> the rows of ``kind``
    (``pv``, ``vg`` or ``lv``). Several reports (one per command run) are concatenated."""
    data = json.loads(text)
    rows: List[Dict[str, str]] = []
    for report in data.get("report") or []:
        rows.extend(report.get(kind) or [])
    return rows


def parse_efibootmgr(text: str) -> Dict[str, Any]:
    """``efibootmgr -v``: BootCurrent, BootOrder, Timeout and the ``BootXXXX`` entries."""
    result: Dict[str, Any] = {"current": None, "order": [], "timeout": None, "entries": []}
    for line in text.splitlines():
        if line.startswith("BootCurrent:"):
            result["current"] = line.split(":", 1)[1].strip()
        elif line.startswith("BootOrder:"):
            result["order"] = [x for x in line.split(":", 1)[1].strip().split(",") if x]
        elif line.startswith("Timeout:"):
            result["timeout"] = line.split(":", 1)[1].strip()
        elif line.startswith("Boot") and len(line) > 8 and line[4:8].isalnum() and line[8] in "* ":
            rest = line[9:].strip()
            # efibootmgr separates label and device path by a tab (older ones by blanks only)
            label, _tab, path = rest.partition("\t")
            result["entries"].append({
                "number": line[4:8], "active": line[8] == "*", "label": label.strip(), "path": path.strip(),
            })
    return result


def parse_debconf_show(text: str) -> Dict[str, str]:
    """``debconf-show PKG``: ``[*] question: value`` lines -> {question: value}."""
    answers = {}
    for line in text.splitlines():
        line = line.lstrip("* ").rstrip()
        if ": " in line or line.endswith(":"):
            key, _colon, value = line.partition(":")
            answers[key.strip()] = value.strip()
    return answers


def grub_devices(answers: Dict[str, str]) -> List[str]:
    value = answers.get("grub-pc/install_devices", "")
    return [dev.strip() for dev in value.split(",") if dev.strip()]


# ---------------------------------------------------------------------------------------- collecting
Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def find_tool(name: str) -> Optional[str]:
    """The tool's absolute path, also in the sbin directories that a non-root PATH lacks."""
    path = os.environ.get("PATH", os.defpath)
    return shutil.which(name, path=os.pathsep.join([path, *SBIN_DIRS]))


def run_tool(name: str, argv: Sequence[str], *, runner: Runner = subprocess.run,
             which: Callable[[str], Optional[str]] = find_tool, timeout: int = TIMEOUT) -> Item:
    """Run ``argv`` (argv[0] looked up) without a shell; never raises."""
    program = which(argv[0])
    if program is None:
        return Item(name=name, status=TOOL_MISSING, command=list(argv))
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = runner([program, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                      errors="surrogateescape", timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return Item(name=name, status=FAILED, command=list(argv), stderr=f"timed out after {timeout}s")
    except OSError as exc:
        return Item(name=name, status=FAILED, command=list(argv), stderr=str(exc))
    status = OK if proc.returncode == 0 else FAILED
    return Item(name=name, status=status, command=list(argv), rc=proc.returncode, output=proc.stdout,
                stderr=proc.stderr)


def read_item(name: str, paths: Sequence[str], root: str = "/") -> Item:
    """Read the first existing file of ``paths``; none of them: not present."""
    for path in paths:
        full = os.path.join(root, path.lstrip("/"))
        try:
            with open(full, encoding="utf-8", errors="surrogateescape") as handle:
                return Item(name=name, status=OK, source=path, output=handle.read())
        except FileNotFoundError:
            continue
        except OSError as exc:
            return Item(name=name, status=FAILED, source=path, stderr=str(exc))
    return Item(name=name, status=NOT_PRESENT, source=paths[0])


def _parse(item: Item, parser: Callable[[str], Any]) -> Item:
    if item.status == OK:
        try:
            item.data = parser(item.output)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            item.status = FAILED
            item.stderr = (item.stderr + f"\ncannot parse output: {exc}").lstrip()
    return item


def collect(*, runner: Runner = subprocess.run, which: Callable[[str], Optional[str]] = find_tool,
            root: str = "/", now: Optional[float] = None) -> Collection:
    """Collect every item on this host. ``runner``/``which``/``root`` are for tests."""
    def tool(name: str, argv: Sequence[str]) -> Item:
        return run_tool(name, argv, runner=runner, which=which)

    col = Collection(collected_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)))

    lsblk = col.add(_parse(tool("lsblk", ["lsblk", "--json", "--bytes", "--output", LSBLK_COLUMNS]), json.loads))
    col.disks = disks_from_lsblk(lsblk.data) if lsblk.status == OK else []
    for disk in col.disks:
        item = col.add(tool(f"sfdisk/{disk}", ["sfdisk", "--dump", f"/dev/{disk}"]))
        if item.status == FAILED and "does not contain a recognized partition table" in item.stderr:
            item.status = NOT_PRESENT
        elif item.status == FAILED and f"cannot open /dev/{disk}: No such file or directory" in item.stderr:
            # lsblk reads sysfs, which a container shares with its machine; without the device node the
            # disk is the machine's, not this system's to rebuild (the stderr says so in metadata.json)
            item.status = NOT_PRESENT
    blkid = col.add(_parse(tool("blkid", ["blkid", "-c", "/dev/null"]), parse_blkid))
    if blkid.status == FAILED and blkid.rc == 2 and not blkid.output:
        blkid.status = NOT_PRESENT  # blkid exits 2 when no device has a known type
    if lsblk.status == OK and blkid.status == OK:
        fill_from_blkid(lsblk.data, blkid.data)
    col.add(_parse(tool("df", ["df", "-P", "-T", "-l"]), parse_df))
    col.add(_parse(read_item("fstab", ["/etc/fstab"], root), lambda t: parse_table(t, FSTAB_FIELDS)))
    col.add(_parse(read_item("crypttab", ["/etc/crypttab"], root),
                   lambda t: parse_table(t, ("target", "source", "key_file", "options"))))
    col.add(_parse(read_item("mounts", ["/proc/self/mounts"], root), lambda t: parse_table(t, FSTAB_FIELDS)))
    col.add(_parse(read_item("swaps", ["/proc/swaps"], root), parse_swaps))

    mdstat = col.add(read_item("mdstat", ["/proc/mdstat"], root))
    mdadm = col.add(_parse(tool("mdadm", ["mdadm", "--detail", "--scan", "--verbose"]), parse_mdadm_scan))
    if mdadm.status == OK and not mdadm.data:
        mdadm.status = NOT_PRESENT
    elif mdadm.status == FAILED and mdstat.status == NOT_PRESENT:
        mdadm.status = NOT_PRESENT  # no md driver loaded: nothing to scan

    for kind, fields in (("pv", PVS_FIELDS), ("vg", VGS_FIELDS), ("lv", LVS_FIELDS)):
        argv = [f"{kind}s", "--reportformat", "json", "--units", "b", "--nosuffix", "-a", "-o", fields]
        if kind != "lv":
            argv.remove("-a")  # -a (hidden internal LVs) exists only for lvs
        item = col.add(_parse(tool(f"{kind}s", argv), lambda t, k=kind: parse_lvm_report(t, k)))
        if item.status == OK and not item.data:
            item.status = NOT_PRESENT

    efi = os.path.isdir(os.path.join(root, "sys/firmware/efi"))
    if efi:
        efiboot = col.add(_parse(tool("efibootmgr", ["efibootmgr", "-v"]), parse_efibootmgr))
    else:
        efiboot = col.add(Item(name="efibootmgr", status=NOT_PRESENT, command=["efibootmgr", "-v"],
                               stderr="not booted by EFI (no /sys/firmware/efi)"))
    grub = col.add(_parse(tool("grub-pc", ["debconf-show", "grub-pc"]), parse_debconf_show))
    if grub.status == OK and not grub.data:
        grub.status = NOT_PRESENT  # grub-pc not installed: debconf-show prints nothing
    col.boot = {
        "firmware": "efi" if efi else "bios",
        "grub_install_devices": grub_devices(grub.data) if grub.status == OK else [],
        "efi": efiboot.data if efiboot.status == OK else None,
    }

    col.add(_parse(read_item("os-release", ["/etc/os-release", "/usr/lib/os-release"], root), parse_key_values))
    col.add(tool("uname", ["uname", "-a"]))
    hostname = col.add(read_item("hostname", ["/proc/sys/kernel/hostname"], root))
    hostname.data = hostname.output.strip() or None
    if which("dpkg"):
        packages = col.add(tool("packages", ["dpkg", "--get-selections"]))
    else:
        packages = col.add(tool("packages", ["rpm", "-qa"]))
    _parse(packages, lambda t: len(t.splitlines()))
    return col


# ---------------------------------------------------------------------------------------------- edge
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dervish-metadata",
        description="Collect this host's restore metadata (partition tables, filesystems, RAID, LVM, boot "
                    "loader, OS, packages) and print it as one JSON document on stdout.",
        epilog="Exit codes: 0 collected (missing tools and absent features are skipped, not errors); "
               "1 some item failed (the JSON is still printed); 2 bad usage.",
    )
    parser.add_argument("--json", action="store_true",
                        help="print JSON (the default and only format; accepted for the gate's allowlist)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    build_parser().parse_args(argv)  # exits 2 on bad usage
    col = collect()
    data = col.to_dict()
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    for name in col.failed:
        item = col.items[name]
        sys.stderr.write(f"dervish-metadata: {name} failed (rc {item.rc}): {item.stderr.strip()[:200]}\n")
    return EXIT_ITEM_FAILED if col.failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
