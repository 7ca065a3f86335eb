"""Rebuild a client's disk onto a blank target from a ``DiskPlan``: the steps of a bare-metal restore.

``rebuild(plan, device, log)`` runs, each logged as ``step N/M: ...``:

1. ``sfdisk`` from the saved dump (same size or larger disk; the dump is grown when the plan says so);
2. ``partx`` so the kernel knows the new partitions, then their device nodes (``udevadm settle``;
   made from sysfs where no udev runs, e.g. on a rescue system or in a container);
3. one ``mkfs`` per filesystem with its saved type, UUID and label, ``mkswap -U -L`` for swap;
4. the filesystems mounted under a private temporary directory (root first);
5. one ``rsync -aHAX --numeric-ids`` per vault from the image's tree into its place;
6. what backups leave out recreated (missing directories only, with the plan's modes);
7. the boot loader: ``grub-install --target=i386-pc`` (BIOS) or ``--target=x86_64-efi --removable
   --no-nvram`` (EFI: the server's firmware variables are not the client's, so the fallback path);
8. a vfat filesystem that this server's kernel cannot mount (an EFI system partition restored by a
   server built without vfat) is staged instead: a tmpfs takes its place in step 4, named after the
   partition so that grub-install, which finds the EFI directory's device in the mount table and
   probes it with GRUB's own FAT driver, accepts it; steps 5-7 fill the stage, and mtools' ``mcopy``
   writes it into the partition;

and unmounts everything in ``finally``. The target must have passed ``disk_guard.check_target`` (the
caller's job, so that check mode can run it too). A failed step raises ``RebuildError`` naming the
step and what to do; the target is then incomplete and a new run starts again from the table.

Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from .disk_plan import DiskPlan, Partition
from .errors import DervishError

Log = Callable[[str], None]
TIMEOUT = 6 * 3600   # a copy of a big filesystem takes hours; a hung tool must still end


class RebuildError(DervishError):
    """A rebuild step failed; the message names the step and what to do next."""


@dataclass
class RebuildResult:
    device: str
    steps: List[str] = field(default_factory=list)
    phases: Dict[str, float] = field(default_factory=dict)     # phase -> seconds
    nodes: Dict[int, str] = field(default_factory=dict)        # partition number -> device node


def mkfs_argv(part: Partition, node: str) -> Optional[List[str]]:
    """The command that makes ``part``'s filesystem with its saved UUID and label (None: nothing to make)."""
    kind, uuid, label = part.fstype, part.uuid, part.label
    if not kind:
        return None
    if kind == "swap":
        argv = ["mkswap"] + (["-U", uuid] if uuid else []) + (["-L", label] if label else [])
    elif kind in ("ext2", "ext3", "ext4"):
        argv = [f"mkfs.{kind}", "-q", "-F"] + (["-U", uuid] if uuid else []) + (["-L", label] if label else [])
    elif kind == "xfs":
        argv = ["mkfs.xfs", "-q", "-f"] + (["-m", f"uuid={uuid}"] if uuid else []) + (["-L", label] if label else [])
    elif kind == "btrfs":
        argv = ["mkfs.btrfs", "-q", "-f"] + (["-U", uuid] if uuid else []) + (["-L", label] if label else [])
    elif kind == "vfat":
        argv = ["mkfs.vfat"] + (["-i", uuid.replace("-", "")] if uuid else []) + (["-n", label] if label else [])
    else:
        raise RebuildError(f"partition {part.number}: cannot make a {kind} filesystem")
    return argv + [node]


# The tool each step runs and the Debian package that has it, for the preflight's message.
TOOL_PACKAGES = {"sfdisk": "fdisk", "partx": "util-linux", "wipefs": "util-linux", "mkswap": "util-linux",
                 "mkfs.ext2": "e2fsprogs", "mkfs.ext3": "e2fsprogs", "mkfs.ext4": "e2fsprogs",
                 "mkfs.xfs": "xfsprogs", "mkfs.btrfs": "btrfs-progs", "mkfs.vfat": "dosfstools",
                 "rsync": "rsync", "grub-install": "grub2-common", "mcopy": "mtools"}
GRUB_PLATFORMS = {"bios": ("i386-pc", "grub-pc-bin"), "efi": ("x86_64-efi", "grub-efi-amd64-bin")}


def kernel_filesystems(proc_filesystems: str = "/proc/filesystems", modules_dir: Optional[str] = None) -> set:
    """The filesystem types this kernel mounts: those it has now, and those a module of it would add
    (``alias fs-<type>`` in its modules.alias)."""
    found = set()
    with open(proc_filesystems, encoding="ascii") as handle:
        for line in handle:
            found.add(line.split()[-1])
    alias = os.path.join(modules_dir or f"/lib/modules/{os.uname().release}", "modules.alias")
    if os.path.exists(alias):
        with open(alias, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "alias" and parts[1].startswith("fs-"):
                    found.add(parts[1][len("fs-"):])
    return found


def missing_for(plan: DiskPlan, which: Callable[[str], Optional[str]] = shutil.which,
                filesystems: Optional[set] = None, grub_lib: str = "/usr/lib/grub") -> List[str]:
    """What this server lacks to carry out ``plan``, one phrase each (empty: it has everything). Checked
    before the target is touched: a rebuild that stopped at a missing mkfs or boot loader would leave a
    wiped disk behind."""
    tools = ["sfdisk", "partx", "rsync"]
    tools += [(mkfs_argv(part, "/dev/null") or [""])[0] for part in plan.partitions if part.fstype]
    if plan.boot_loader in GRUB_PLATFORMS:
        tools.append("grub-install")
    missing = [f"{tool} (apt install {TOOL_PACKAGES.get(tool, tool)})"
               for tool in dict.fromkeys(t for t in tools if t) if which(tool) is None]
    if plan.boot_loader in GRUB_PLATFORMS:
        platform, package = GRUB_PLATFORMS[plan.boot_loader]
        if not os.path.isdir(os.path.join(grub_lib, platform)):
            missing.append(f"GRUB for {plan.boot_loader.upper()} ({grub_lib}/{platform}: apt install {package})")
    mountable = kernel_filesystems() if filesystems is None else filesystems
    for part in plan.filesystems():
        if part.fstype in mountable:
            continue
        if part.fstype in STAGEABLE:
            if which("mcopy") is None:
                missing.append(f"mcopy (apt install mtools), to write the new {part.mount_point} (partition "
                               f"{part.number}): this kernel cannot mount {part.fstype}")
            continue
        missing.append(f"its kernel's {part.fstype} filesystem, to mount the new {part.mount_point} "
                       f"(partition {part.number}): neither built in nor a module")
    return missing


# Filesystems written from a stage with mtools when the kernel cannot mount them.
STAGEABLE = ("vfat",)


def staged_parts(plan: DiskPlan, filesystems: Optional[set] = None) -> List[Partition]:
    """The plan's filesystems that this kernel cannot mount and that are staged and written with mtools."""
    mountable = kernel_filesystems() if filesystems is None else filesystems
    return [part for part in plan.filesystems() if part.fstype not in mountable and part.fstype in STAGEABLE]


def partition_names(disk_name: str, sys_root: str = "/sys") -> Dict[int, str]:
    """Partition number -> kernel name, as sysfs shows them now."""
    base = os.path.join(sys_root, "class/block", disk_name)
    out = {}
    for entry in os.listdir(base) if os.path.isdir(base) else []:
        number_file = os.path.join(base, entry, "partition")
        if os.path.exists(number_file):
            with open(number_file, encoding="ascii") as handle:
                out[int(handle.read().strip())] = entry
    return out


class Rebuild:
    def __init__(self, plan: DiskPlan, device: str, log: Log, sys_root: str = "/sys",
                 filesystems: Optional[set] = None):
        self.plan, self.device, self.log, self.sys_root = plan, device, log, sys_root
        self.result = RebuildResult(device=device)
        self.mounted: List[str] = []
        self.root: Optional[str] = None
        self.staged = {part.number: part for part in staged_parts(plan, filesystems)}
        self.stages: Dict[int, str] = {}   # partition number -> its stage's directory
        filesystems = [p for p in plan.partitions if p.fstype]
        self.titles = (["partition the disk from the saved sfdisk dump", "make the partitions' device nodes"]
                       + [f"make {p.fstype} on partition {p.number}" for p in filesystems]
                       + ["mount the new filesystems"]
                       + [f"copy vault {pl.vault} into {pl.tree}" for pl in plan.placements]
                       + ["recreate what backups leave out"]
                       + ([f"install the boot loader ({plan.boot_loader})"] if plan.boot_loader != "none" else [])
                       + [f"write the staged {p.fstype} of partition {p.number} with mcopy"
                          for p in self.staged.values()]
                       + ["unmount"])
        self.n = 0

    # ------------------------------------------------------------------------------------- helpers
    def step(self, title: str) -> str:
        self.n += 1
        line = f"step {self.n}/{len(self.titles)}: {title}"
        self.log(line)
        self.result.steps.append(line)
        return line

    def run(self, argv: Sequence[str], what: str, stdin: Optional[str] = None) -> str:
        self.log("  $ " + " ".join(argv))
        try:
            proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, errors="replace",
                                  timeout=TIMEOUT, check=False, env={**os.environ, "LC_ALL": "C"})
        except FileNotFoundError:
            raise RebuildError(f"step {self.n}/{len(self.titles)} ({what}) failed: {argv[0]} is not installed "
                               "on this server; install it and run again") from None
        except subprocess.TimeoutExpired:
            raise RebuildError(f"step {self.n}/{len(self.titles)} ({what}) failed: {argv[0]} did not end "
                               f"within {TIMEOUT}s") from None
        for line in (proc.stdout + proc.stderr).splitlines()[-20:]:
            self.log("    " + line)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no message"])[-1]
            raise RebuildError(f"step {self.n}/{len(self.titles)} ({what}) failed: {argv[0]} exited "
                               f"{proc.returncode}: {last}; {self.device} is incomplete: fix that and run again "
                               "(the rebuild starts again from the partition table)")
        return proc.stdout

    def timed(self, phase: str, start: float) -> None:
        self.result.phases[phase] = self.result.phases.get(phase, 0.0) + time.monotonic() - start

    # ---------------------------------------------------------------------------------------- steps
    def partition(self) -> None:
        start = time.monotonic()
        self.step(self.titles[0])
        # wipefs first: old signatures on the blank disk must not survive beside the new table
        self.run(["wipefs", "-a", "-q", self.device], "partition the disk")
        self.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", "--wipe", "always",
                  "--wipe-partitions", "always", self.device], "partition the disk", stdin=self.plan.target_dump)
        self.step(self.titles[1])
        disk_name = os.path.basename(os.path.realpath(self.device))
        subprocess.run(["partx", "-d", self.device], capture_output=True, check=False)
        self.run(["partx", "-a", self.device], "make the partitions' device nodes")
        if shutil.which("udevadm"):
            subprocess.run(["udevadm", "settle", "--timeout=30"], capture_output=True, check=False)
        names = partition_names(disk_name, self.sys_root)
        for part in self.plan.partitions:
            name = names.get(part.number)
            if name is None:
                raise RebuildError(f"step {self.n}/{len(self.titles)}: the kernel shows no partition {part.number} "
                                   f"on {self.device} after partx -a; check dmesg, then run again")
            self.result.nodes[part.number] = self.node(name)
        self.timed("partition", start)

    def node(self, name: str) -> str:
        """/dev/NAME for the kernel's partition NAME. Without udev (a rescue system, a container) it is made
        from sysfs, and a stale node of an earlier table (partition numbers are allocated anew) is replaced:
        mkfs must never write through a node that names another device."""
        node = f"/dev/{name}"
        with open(os.path.join(self.sys_root, "class/block", name, "dev"), encoding="ascii") as handle:
            major, minor = (int(x) for x in handle.read().strip().split(":"))
        want = os.makedev(major, minor)
        try:
            st = os.lstat(node)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISBLK(st.st_mode) and st.st_rdev == want:
            return node
        if st is not None:
            os.unlink(node)
        os.mknod(node, 0o660 | stat.S_IFBLK, want)
        self.log(f"    made {node} ({major}:{minor})")
        return node

    def make_filesystems(self) -> None:
        start = time.monotonic()
        for part in self.plan.partitions:
            if not part.fstype:
                continue
            self.step(f"make {part.fstype} on partition {part.number}")
            argv = mkfs_argv(part, self.result.nodes[part.number])
            if argv:
                self.run(argv, f"make {part.fstype} on partition {part.number}")
        self.timed("mkfs", start)

    def mount(self) -> None:
        self.step("mount the new filesystems")
        self.root = tempfile.mkdtemp(prefix="dervish-rebuild-")
        for part in self.plan.filesystems():
            where = os.path.join(self.root, part.mount_point.lstrip("/"))
            os.makedirs(where, exist_ok=True)
            node = self.result.nodes[part.number]
            if part.number in self.staged:
                self.log(f"    this kernel cannot mount {part.fstype}: {part.mount_point} is staged on a tmpfs "
                         f"and written into {node} with mcopy after the boot loader")
                # the tmpfs's source names the partition: grub-install reads the EFI directory's device
                # from the mount table, and the copy must fit the partition
                size = max(part.size * self.plan.sector_size, 1 << 20)
                self.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,size={size}", node, where],
                         "mount the new filesystems")
                self.stages[part.number] = where
            else:
                self.run(["mount", "-t", part.fstype, node, where], "mount the new filesystems")
            self.mounted.append(where)

    def copy(self) -> None:
        start = time.monotonic()
        if not self.root:
            raise AssertionError("the new filesystems are not mounted")
        for placement in sorted(self.plan.placements, key=lambda pl: (pl.tree.count("/") if pl.tree != "/" else 0)):
            self.step(f"copy vault {placement.vault} into {placement.tree}")
            dest = os.path.join(self.root, placement.tree.lstrip("/"))
            os.makedirs(dest, exist_ok=True)
            self.run(["rsync", "-aHAX", "--numeric-ids", "--stats", placement.image_tree.rstrip("/") + "/",
                      dest.rstrip("/") + "/"], f"copy vault {placement.vault}")
        self.timed("copy", start)

    def recreate(self) -> None:
        if not self.root:
            raise AssertionError("the new filesystems are not mounted")
        self.step("recreate what backups leave out")
        for path, mode in self.plan.left_out:
            full = os.path.join(self.root, path.lstrip("/"))
            if os.path.lexists(full):
                self.log(f"    {path} is in the image: kept as it is")
                continue
            # the nearest existing parent keeps the image's mtime: the copy stays exact, what is added
            # does not show
            parent = os.path.dirname(full.rstrip("/"))
            while not os.path.isdir(parent):
                parent = os.path.dirname(parent)
            times = os.stat(parent)
            os.makedirs(full, exist_ok=True)
            os.chown(full, 0, 0)
            os.chmod(full, mode)
            os.utime(parent, ns=(times.st_atime_ns, times.st_mtime_ns))
            self.log(f"    made {path} (mode {mode:04o})")

    def boot_loader(self) -> None:
        if self.plan.boot_loader == "none":
            return
        if not self.root:
            raise AssertionError("the new filesystems are not mounted")
        start = time.monotonic()
        self.step(f"install the boot loader ({self.plan.boot_loader})")
        boot_dir = os.path.join(self.root, "boot")
        if self.plan.boot_loader == "bios":
            argv = ["grub-install", "--target=i386-pc", f"--boot-directory={boot_dir}", self.device]
        else:
            argv = ["grub-install", "--target=x86_64-efi", f"--efi-directory={os.path.join(self.root, 'boot/efi')}",
                    f"--boot-directory={boot_dir}", "--removable", "--no-nvram", self.device]
        self.run(argv, "install the boot loader")
        self.timed("boot loader", start)

    def write_stages(self) -> None:
        """Each staged filesystem's files into its partition (mcopy: recursive, mtimes kept, stop at the
        first error); FAT keeps no owners, modes or links, so this is all the partition can hold."""
        start = time.monotonic()
        for number, where in self.stages.items():
            part = self.staged[number]
            self.step(f"write the staged {part.fstype} of partition {number} with mcopy")
            entries = sorted(os.listdir(where))
            if entries:
                self.run(["mcopy", "-s", "-p", "-m", "-Q", "-i", self.result.nodes[number]]
                         + [os.path.join(where, entry) for entry in entries] + ["::/"],
                         f"write partition {number} with mcopy")
            else:
                self.log("    nothing to write: the filesystem stays empty")
        if self.stages:
            self.timed("copy", start)

    def unmount(self) -> None:
        errors = []
        for where in reversed(self.mounted):
            proc = subprocess.run(["umount", where], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                errors.append(f"{where}: {proc.stderr.strip()}")
        self.mounted = []
        if self.root and not errors:
            shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise RebuildError(f"could not unmount the rebuilt filesystems ({'; '.join(errors)}); "
                               "unmount them by hand before moving the disk")

    def run_all(self) -> RebuildResult:
        try:
            self.partition()
            self.make_filesystems()
            self.mount()
            self.copy()
            self.recreate()
            self.boot_loader()
            self.write_stages()
        except BaseException:
            if self.root:
                try:
                    self.n = len(self.titles) - 1   # the last step, also when steps were left out
                    self.step("unmount")
                    self.unmount()
                except RebuildError as exc:
                    self.log(str(exc))   # the step that failed is the message; this one is logged
            raise
        if self.root:
            subprocess.run(["sync"], check=False)
            self.step("unmount")
            self.unmount()
        return self.result


def rebuild(plan: DiskPlan, device: str, log: Log, sys_root: str = "/sys") -> RebuildResult:
    """Rebuild ``device`` as ``plan`` says (the target must have passed disk_guard first)."""
    return Rebuild(plan, device, log, sys_root).run_all()
