"""The ``dervish`` command line (``dervish --help``; ``python -m dervish_engine`` works too)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from typing import List, Optional

from .config import check_jobs, check_local_tree, find_vault_dir, load_master, load_vault
from .errors import (
    BANK_STATES,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    DervishError,
    LockedError,
    os_error_text,
)
from .rsync import MAX_ATTEMPTS

try:
    from . import __version__
except ImportError:  # a stale editable install can expose the package as a namespace (no __init__)
    __version__ = "0.1.0"

EXIT_CODES = """\
exit codes:
  0  success; also an image with rsync warning 24 (file vanished), which is a good image
  1  the image failed (rsync error/fatal, pre-hook failure): it is kept, mode 0700, never a reference;
     also another operating-system error; expire: an image could not be removed, or its summary or
     Expire: cannot be read (the image is kept; also with --dry-run); status: an image's summary
     cannot be read
  2  usage or configuration error, or the image could not be started (exists, no reference, a local
     tree missing, the bank read-only, full or failing): nothing was created; status, expire: a bank
     is missing (is the drive mounted?), the other banks are still shown / expired
  3  the vault is locked by a live run: it is busy being imaged (by another dervish image or runall, a
     playbook's snapshot task, or Dirvish) and nothing was written to it; a stale lock of a dead run
     is cleared automatically
  4  the image is good but a post-client/post-server hook, the index or the metadata failed
  130/143  interrupted by SIGINT / SIGTERM (a running image is marked "error -- interrupted"; runall
     stops every running image that way and starts no more)
  runall: the number of failed entries (capped at 100); a bank found full or unusable gets no further
     entry (they fail as "not started"); a busy vault is reported as "busy" and is not counted as
     failed (another run is imaging it right now, so a nightly run does not mail a failure for it);
     check: 2 when any configuration is broken
"""

RSYNC_HELP = f"""\
rsync command line, in this fixed order:
  rsync -vrltH --delete [-pgo] [-D] [-A] [-X] [--numeric-ids] [--stats] [--timeout=N]
        [-c] [-S] [-W] [-x] [-z] [--bwlimit=KBPS] [--password-file=F] [--rsync-path=P] [-e RSH]
        <rsync-option...> --exclude-from=<image>/exclude [--link-dest=<reference>/tree]
        <tree>/ | <client>:<tree>/   <image>/tree
rsync exit 0 = success, 24 = warning (good image); 1-5, 30 and 35 (timeouts), 124-127 or a fatal
stderr message (No space left on device, Connection refused, Connection timed out, a tree missing on
the client, ...) = fatal error; any other code = error, retried up to {MAX_ATTEMPTS} executions in the same
image directory. A status that only explains the exit code ends with rsync's own first error line.
An ssh RSH (rsh: ssh ...) gets -o ConnectTimeout=T -o ServerAliveInterval=T/3 -o ServerAliveCountMax=3
(T = rsync-timeout, at most 60), each unless RSH sets it: a dead or hung client costs about T, once.
rsync runs in its own process group and gets SIGTERM when dervish dies, even by SIGKILL; the next run
stops whatever a killed run left writing into its image before it starts.
"""

SLOTS_HELP = """\
images at once: the master's Runall-jobs: N (default 1; the role's backup_server_max_parallel) limits
  the images running at the same time on the whole server, across every dervish image, runall and
  the snapshot module: each image takes one of N slots (an flock on /run/lock/dervish-slots/slot-1
  .. slot-N; $DERVISH_SLOT_DIR names another directory) before its hooks, metadata and rsync, and
  holds it until it has finished. When all are taken it says that it waits, and for whom, and waits;
  a killed run frees its slot at once. --dry-run takes none. runall --jobs N runs at most N of its
  vaults at once, and never more than the server's N slots: the lower of the two holds.
  A vault whose lock a live run holds is busy: reported at once (exit 3, runall: "busy"), no slot
  is waited for and nothing is written to the vault.
"""

RUNALL_EXIT = "\nexit code: number of failed entries (max 100); busy vaults (another run is imaging them) " \
              "are reported and not counted"

METADATA_HELP = """\
restore metadata (vault key "metadata: COMMAND", e.g. "metadata: dervish-metadata --json"):
  after the pre hooks and right before rsync, COMMAND runs on the client -- through the same bounded
  RSH as rsync ("RSH CLIENT COMMAND", so the client's gate sees exactly COMMAND), or "sh -c COMMAND"
  for a local client -- and must print dervish-metadata's JSON (exit 0, or 1 when some items failed).
  The JSON is checked (at most 32 MiB, structure, item names are plain file names) and written as
  <image>/metadata/ (one file per item, e.g. sfdisk/sda.dump, lsblk.json, hostname, plus metadata.json).
  The summary says "Metadata: ok", "ok (items failed: ...)" (a warning), "failed (REASON)" or "none";
  a failure never makes a good image bad (a good image without metadata exits 4; failed items are a
  warning only). "status --json" reports "metadata" (true/false) for the last good image.
"""


def _jobs(text: str) -> int:
    try:
        return check_jobs(text)
    except ConfigError as exc:  # argparse turns this into its usage error (exit 2)
        raise argparse.ArgumentTypeError(exc.message.replace("Runall-jobs", "--jobs")) from None


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="dervish", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Dirvish-compatible rsync/hard-link snapshot backups.", epilog=SLOTS_HELP + "\n" + EXIT_CODES)
    top.add_argument("--config", metavar="MASTER",
                     help="master configuration (default /etc/dervish/master.conf, else "
                          "/etc/dirvish/master.conf; give /etc/dirvish/master.conf to adopt Dirvish)")
    top.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    top.add_argument("--version", action="version", version="dervish " + __version__)
    # --config/--quiet are accepted after the subcommand too (SUPPRESS keeps the top-level value)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="MASTER", default=argparse.SUPPRESS, help="master configuration")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="print errors only")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("image", parents=[common], help="create one image of a vault",
                       epilog=RSYNC_HELP + "\n" + SLOTS_HELP + "\n" + METADATA_HELP + "\n" + EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Create an image of VAULT (branch BRANCH, default 'default'). A vault "
                                   "without any image is initialised automatically (full copy).")
    p.add_argument("vault", metavar="VAULT[:BRANCH]")
    p.add_argument("--init", action="store_true", help="full copy, no --link-dest reference")
    p.add_argument("--image", metavar="NAME",
                   help="image name (strftime format), overrides image:; names have no '/', whitespace or "
                        "control characters and do not start with '-' or '#'. A name made from a pattern "
                        "that another branch's image has becomes NAME-BRANCH")
    p.add_argument("--image-time", metavar="T", help="image time, e.g. '22:00' or '2026-11-26 22:00'")
    p.add_argument("--expire", metavar="SPEC", help="expire spec, e.g. '+15 days' or never")
    p.add_argument("--reference", metavar="BRANCH|IMAGE",
                   help="link against this branch's newest good image, or this image")
    p.add_argument("--dry-run", "--no-run", action="store_true",
                   help="print the summary and rsync command, create nothing")

    p = sub.add_parser("runall", parents=[common], help="image every Runall: entry of the master configuration",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=SLOTS_HELP + RUNALL_EXIT)
    p.add_argument("--jobs", "-j", type=_jobs, metavar="N",
                   help="vaults in parallel, N >= 1 (default and upper limit: Runall-jobs:, or 1)")
    p.add_argument("--dry-run", "--no-run", action="store_true", help="only print what would run")

    p = sub.add_parser("expire", parents=[common],
                       help="remove expired images (the newest good image of a branch is kept)")
    p.add_argument("--dry-run", "--no-run", action="store_true", help="only print what would be removed")
    p.add_argument("--vault", metavar="V", help="only this vault")
    p.add_argument("--tree", action="store_true", help="remove only the tree/ of expired images")
    p.add_argument("--time", metavar="T", help="pretend it is this time")

    p = sub.add_parser("locate", parents=[common], help="find versions of files in a vault's image indexes",
                       description="PATTERN is a (Python) regular expression searched in the file name, the "
                                   "last path component, decoded (find's escapes such as '\\ ' and "
                                   "'\\303\\274' undone), so 'a b' and 'ü' match as written; '$' anchors "
                                   "at the end of the name. It cannot contain '/' or be empty. Paths are "
                                   "printed as the index stores them, like dirvish-locate.")
    p.add_argument("vault", metavar="VAULT[:BRANCH]")
    p.add_argument("pattern", metavar="PATTERN")

    p = sub.add_parser("status", parents=[common],
                       help="last good image, last attempt, age, images and space per vault",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="exit codes: 0 ok; 1 an image's summary cannot be read (named on stderr);\n"
                              "2 a bank is missing (e.g. the backup drive is not mounted); the others are shown")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (also: whether the last good image has metadata/)")
    p.add_argument("--space", action="store_true",
                   help="also measure each vault's disk usage (USED) by walking every inode: slow on a "
                        "big bank; by default SIZE/NEW come from the last good image's summary")
    p.add_argument("--prometheus", metavar="FILE",
                   help="also write FILE (atomically, mode 0644) in node_exporter's textfile-collector format: "
                        "per vault last success time, duration, size, new bytes, last status, image count "
                        "(metrics: see dervish_engine/prometheus.py); with --quiet, print nothing else; "
                        "exit 1 when FILE cannot be written")

    p = sub.add_parser("versions", parents=[common], help="list the versions of a path across a vault's good images",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Every good image of VAULT that has PATH (newest first): image, when its "
                                   "backup began, type, size, mtime, mode, and whether it is the same file "
                                   "(inode) as in the next newer image that has it: 'yes' means unchanged.",
                       epilog="PATH is the client's path (e.g. /home/alice/doc.txt, under the vault's tree) or "
                              "relative to the vault's tree; '..' is refused.\n"
                              "exit codes: 0 found; 1 in no good image; 2 usage error (bad path, no such vault)")
    p.add_argument("vault", metavar="VAULT")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("restore", parents=[common], help="copy paths from an image into a local directory",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Copy PATH... from an image of VAULT into DIR, each at DIR/<client path> "
                                   "(--to /srv/r puts /home/alice/doc.txt at /srv/r/home/alice/doc.txt), with "
                                   "rsync -aHAX --numeric-ids --relative (owners, modes, ACLs, xattrs, hard "
                                   "links, symlinks, mtimes; parent directories get the image's attributes). "
                                   "Prints rsync's itemized changes. Files in DIR the image lacks are kept "
                                   "unless --delete. Never writes outside DIR and never follows a symlink of "
                                   "the image.",
                       epilog="SPEC: 'latest' (the newest good image), an image name, a date or time "
                              "('2026-12-01' = the last image begun that day, '2026-12-01 14:00'), or a "
                              "relative time ('3 days ago', '-3d', '-12h'); failed images are never chosen.\n"
                              "exit codes: 0 restored (or nothing to change); 1 rsync failed; 2 usage error "
                              "(no such image, a path with '..', outside the tree or not in the image)")
    p.add_argument("vault", metavar="VAULT")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.add_argument("--to", metavar="DIR", required=True, help="the directory to restore into (created, mode 0700)")
    p.add_argument("--image", metavar="SPEC", default="latest", help="which image (default: latest)")
    p.add_argument("--delete", action="store_true",
                   help="delete files below a restored directory that the image does not have")
    p.add_argument("--dry-run", "-n", action="store_true", help="only list what would change")

    p = sub.add_parser("check", parents=[common],
                       help="load the master and every vault/branch configuration, report all errors")
    p.add_argument("--master-only", action="store_true",
                   help="check only the master configuration (banks need not be mounted)")
    p.add_argument("--file", dest="files", action="append", default=[], metavar="FILE",
                   help="check this vault configuration file on its own, without a master (repeatable)")
    return top


def _write_line(stream, message: str, flush: bool = False) -> None:
    stream.write(message + "\n")
    if flush:
        stream.flush()


def _stdout_line(message: str) -> None:
    """One line on the current ``sys.stdout`` (looked up per call, like print)."""
    _write_line(sys.stdout, message)


def _stdout_lines(lines: List[str]) -> None:
    """Many lines on the current ``sys.stdout`` in one write (a restore's 20,000 itemized lines)."""
    sys.stdout.write("".join(line + "\n" for line in lines))


class _Console:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def say(self, message: str) -> None:
        if not self.quiet:
            _write_line(sys.stdout, message, flush=True)

    def note(self, message: str) -> None:
        if not self.quiet:
            _write_line(sys.stderr, f"dervish: {message}", flush=True)

    def progress(self, message: str) -> None:
        if self.tty and not self.quiet:
            _write_line(sys.stderr, f"dervish: {message}", flush=True)

    def error(self, message: str) -> None:
        _write_line(sys.stderr, f"dervish: {message}", flush=True)


def cmd_image(args, master, con: _Console) -> int:
    from .image import ImageOptions, make_image

    opts = ImageOptions(init=args.init, image=args.image, image_time=args.image_time, expire=args.expire,
                        reference=args.reference, dry_run=args.dry_run)

    result = make_image(master, args.vault, None, opts, report=con.note, stdout=sys.stdout, progress=con.progress)
    if args.dry_run:
        return EXIT_OK
    if result.busy:
        con.error(f"{result.error}: busy, no image made")
        return result.exit_code
    label = f"{result.vault}:{result.branch} image {result.name}"
    for problem in result.problems:
        con.error(f"{label}: {problem}")
    if result.exit_code == EXIT_FAILED:
        con.error(f"{label} failed: {result.summary_status}")
    else:
        con.say(f"{label}: {result.summary_status}")
    return result.exit_code


# Subcommand modules are imported when used: a cron'd `dervish image` starts faster.


def cmd_runall(args, master, con: _Console) -> int:
    from .runall import run_all

    return run_all(master, jobs=args.jobs, dry_run=args.dry_run, out=con.say if not args.dry_run else _stdout_line,
                   report=con.note, progress=con.progress)


def cmd_expire(args, master, con: _Console) -> int:
    from .expire import apply_plan, plan_expiry, scan_images
    from .status import missing_bank_message, missing_banks
    from .timespec import parse_image_time

    now = parse_image_time(args.time, datetime.now()) if args.time else datetime.now()
    missing = missing_banks(master.banks)
    for bank in missing:  # first: a vault "not found" may only be on the drive that is not mounted
        con.error(missing_bank_message(bank))
    if args.vault:
        find_vault_dir(master, args.vault)  # a misspelt vault is an error, not a quiet no-op
    plan = plan_expiry(scan_images(master.banks, args.vault), now, tree_only=args.tree)
    for problem in plan.problems:
        con.error(problem)
    for im in plan.kept_newest:
        con.say("kept {}:{}:{} ({})".format(im.vault, im.branch, im.name, plan.reasons.get(str(im.path), "")))
    for im in plan.busy:
        con.say("busy {}:{}:{} ({})".format(im.vault, im.branch, im.name, plan.reasons.get(str(im.path), "")))
    if args.dry_run:
        for im in plan.remove:
            what = "tree of " if args.tree else ""
            _stdout_line("would remove {}{}:{}:{} ({})".format(what, im.vault, im.branch, im.name,
                                                               plan.reasons.get(str(im.path), "")))
    else:
        apply_plan(plan, log=con.say)
    if missing:
        return EXIT_USAGE
    if plan.failed or plan.problems:
        return EXIT_FAILED
    return EXIT_OK


def cmd_locate(args, master, con: _Console) -> int:
    from .locate import locate, render

    vault, dummy, branch = args.vault.partition(":")
    result = locate(find_vault_dir(master, vault), args.pattern, branch or None)
    sys.stdout.write(render(result))
    for problem in result.problems:
        con.error(problem)
    return EXIT_FAILED if result.problems else EXIT_OK


def cmd_status(args, master, con: _Console) -> int:
    from .status import collect, missing_bank_message, missing_banks, render_json, render_table

    missing = missing_banks(master.banks)
    rows = collect(master, with_usage=args.space)
    if not (args.prometheus and args.quiet):
        sys.stdout.write(render_json(rows, missing=missing) if args.json else render_table(rows, args.space))
    problems = [f"vault {r.vault}: {p}" for r in rows for p in r.problems]
    if args.prometheus:
        from .prometheus import TextfileError, render, write_atomically
        try:
            write_atomically(args.prometheus, render(rows, [str(b) for b in master.banks], missing))
        except TextfileError as exc:
            problems.append(str(exc))
    for message in [missing_bank_message(b) for b in missing] + problems:
        con.error(message)
    if missing:
        return EXIT_USAGE
    return EXIT_FAILED if problems else EXIT_OK


def cmd_versions(args, master, con: _Console) -> int:
    import json

    from .restore import render_versions, versions

    found = versions(find_vault_dir(master, args.vault), args.path)
    sys.stdout.write(json.dumps(found.as_dict(), indent=2) + "\n" if args.json else render_versions(found))
    return EXIT_OK if found.versions else EXIT_FAILED


def cmd_restore(args, master, con: _Console) -> int:
    from .restore import RsyncFailed, restore_local
    from .select import select_image

    image = select_image(find_vault_dir(master, args.vault), args.image)
    con.note(f"restoring from image {image.name} of vault {args.vault} into {args.to}"
             + (" (dry run)" if args.dry_run else ""))
    try:
        restore_local(image, args.paths, args.to, delete=args.delete, dry_run=args.dry_run, out=_stdout_lines)
    except RsyncFailed as exc:
        con.error(str(exc))
        return EXIT_FAILED
    return EXIT_OK


def cmd_check_files(files: List[str], con: _Console) -> int:
    from .config import check_vault_file

    errors = 0
    for path in files:
        try:
            check_vault_file(path)
        except ConfigError as exc:
            con.error(str(exc))
            errors += 1
    if errors:
        return EXIT_USAGE
    con.say(f"OK: {len(files)} vault configuration file(s) checked")
    return EXIT_OK


def cmd_check(args, master, con: _Console) -> int:
    from .status import vault_dirs

    if args.master_only:
        con.say(f"OK: master {master.path} ({len(master.banks)} bank(s), {len(master.runall)} Runall entries)")
        return EXIT_OK
    errors: List[str] = [f"{master.path}: bank {bank} does not exist or is not a directory"
                         for bank in master.banks if not bank.is_dir()]
    checked = 0
    names = set()
    for vault_dir in vault_dirs(master.banks):
        meta = vault_dir / "dirvish"
        branches = {"default"} | {p.stem for p in meta.glob("*.hist")}
        branches |= {e.branch for e in master.runall if e.vault == vault_dir.name and e.branch}
        for branch in sorted(branches):
            if branch != "default" and not (meta / (f"{branch}.conf")).exists() and not (
                    master.confdir / (f"{branch}.conf")).exists() and not (meta / branch).exists():
                errors.append(f"{vault_dir.name}:{branch}: no configuration file for branch {branch}")
                continue
            names.add(vault_dir.name)
            checked += 1
            try:
                cfg = load_vault(master, vault_dir.name, branch)
            except DervishError as exc:
                errors.append(f"{vault_dir.name}:{branch}: {exc}")
                continue
            try:
                check_local_tree(cfg.client, cfg.tree)
            except ConfigError as exc:
                errors.append(f"{vault_dir.name}:{branch}: {exc.message}")
    for entry in master.runall:
        if entry.vault not in names and not any((b / entry.vault).is_dir() for b in master.banks):
            errors.append(f"{entry.source or master.path}: Runall entry {entry.vault}: vault not found in any bank")
    for message in errors:
        con.error(message)
    if errors:
        con.error(f"{len(errors)} problem(s) in {checked} configuration(s)")
        return EXIT_USAGE
    con.say(f"OK: master {master.path} and {checked} vault configuration(s) checked")
    return EXIT_OK


COMMANDS = {"image": cmd_image, "runall": cmd_runall, "expire": cmd_expire, "locate": cmd_locate,
            "status": cmd_status, "check": cmd_check, "versions": cmd_versions, "restore": cmd_restore}


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwind like Ctrl-C so a running image is marked and the lock released."""


def _terminate(signum, _frame):
    raise Terminated(signal.Signals(signum).name)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    con = _Console(args.quiet)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _terminate)
    try:
        if args.command == "check" and args.files:
            return cmd_check_files(args.files, con)
        master = load_master(args.config)
        return COMMANDS[args.command](args, master, con)
    except LockedError as exc:
        con.error(str(exc))
        return EXIT_LOCKED
    except ConfigError as exc:
        con.error(str(exc))
        return EXIT_USAGE
    except DervishError as exc:
        con.error(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into e.g. head: a reader that stopped early is not an error
        return EXIT_OK
    except OSError as exc:  # one line, no traceback; a bank that cannot be written is "not started" (2)
        con.error(os_error_text(exc))
        return EXIT_USAGE if exc.errno in BANK_STATES else EXIT_FAILED
    except KeyboardInterrupt:
        con.error("interrupted")
        return 130
    except Terminated as exc:
        con.error(f"terminated by {exc}")
        return 143
