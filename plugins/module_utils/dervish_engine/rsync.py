"""rsync command line, log filtering and exit-code classification.

The command line has a stable, documented order (Dirvish's depended on Perl hash order)::

    <rsync> -vrltH --delete [-pgo] [-D] [-A] [-X] [--numeric-ids] [--stats] [--timeout=N]
            [-c] [-S] [-W] [-x] [-z] [--bwlimit=KBPS] [--password-file=F] [--rsync-path=P]
            [-e RSH] <rsync-option ...> --exclude-from=<image>/exclude [--link-dest=<ref>/tree]
            <source> <image>/tree

``-pgo -D -A -X --numeric-ids --stats -c -S -W -x -z`` follow the booleans ``permissions devices acls
xattrs numeric-ids stats checksum sparse whole-file xdev zxfer``; ``-e`` is given only for a remote
client (the source is then ``client:tree/``, one argv element, no shell involved).

Exit classification (fixed; Dirvish's table with its bugs removed):

* 0 -> ``success``; 24 -> ``warning (24) -- file vanished on sender`` (the image is good);
* 1-5, 30, 35 and 124-127 -> ``fatal error (N) -- ...`` (no retry: a client that timed out once is
  dead or hung, and each retry would cost another ``--timeout``);
* any non-zero code whose stderr names a fatal condition ("No space left on device", "Connection
  refused", "Connection timed out", "No route to host", a tree missing on the client, ...)
  -> ``fatal error (N) -- <condition>`` (no retry);
* every other non-zero code (10-14, 20-23, 25 and unknown ones) -> ``error (N) -- ...``,
  retried up to ``MAX_ATTEMPTS`` executions in the same image directory.

When the status would only say what the exit code means, rsync's own first error line is appended
(``error (23) -- partial transfer: rsync: [sender] send_files failed to open ...``), so that the
summary and the console carry the real cause, not only ``rsync_error``.

An ssh remote shell (``rsh:`` whose command is ``ssh``) gets ``-o ConnectTimeout=T -o
ServerAliveInterval=T/3 -o ServerAliveCountMax=3`` (T = ``rsync-timeout``, at most 60 s), each unless
``rsh:`` sets it already: a client that accepts TCP and says nothing costs at most T seconds.

A failed image keeps its (partial) tree: dervish never removes data it cannot prove to be junk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional

MAX_ATTEMPTS = 3

RSYNC_MESSAGES = {
    0: "success",
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files, dirs",
    4: "requested action not supported",
    5: "error starting client-server protocol",
    6: "daemon unable to append to log-file",
    10: "error in socket IO",
    11: "error in file IO",
    12: "error in rsync protocol data stream",
    13: "errors with program diagnostics",
    14: "error in IPC code",
    20: "status returned when sent SIGUSR1, SIGINT",
    21: "some error returned by waitpid()",
    22: "error allocating core memory buffers",
    23: "partial transfer",
    24: "file vanished on sender",
    25: "skipped some deletes due to --max-delete",
    30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection",
    124: "remote shell failed",
    125: "remote shell killed",
    126: "command could not be run",
    127: "command not found",
}

FATAL_CODES = frozenset([1, 2, 3, 4, 5, 30, 35, 124, 125, 126, 127])
# ssh options that bound the time lost on a dead or hung client (see the module docstring)
SSH_BOUND_OPTIONS = ("ConnectTimeout", "ServerAliveInterval", "ServerAliveCountMax")
MAX_CONNECT_TIMEOUT = 60
# lines of rsync's stderr kept in memory per execution; later ones are kept only if they are fatal
MAX_ERROR_LINES = 10000

# (regex on one stderr line, condition text); first match wins.
FILESYSTEM_FULL = "filesystem full"
FATAL_PATTERNS = (
    (re.compile(r"No space left on device"), FILESYSTEM_FULL),
    (re.compile(r"Disk quota exceeded"), "disk quota exceeded"),
    (re.compile(r"Connection refused"), "connection refused"),
    (re.compile(r"No route to host"), "no route to host"),
    (re.compile(r"Connection timed out|Operation timed out|banner exchange"),
     "connection timed out (client not responding)"),
    (re.compile(r"Timeout, server .* not responding"), "client not responding (ssh keepalive timeout)"),
    (re.compile(r"change_dir \S* failed: No such file or directory"), "tree not found on the client"),
    (re.compile(r"change_dir \S* failed: Not a directory"), "tree is not a directory on the client"),
    (re.compile(r"Could not resolve hostname|Name or service not known"), "unknown host"),
    (re.compile(r"Permission denied \(publickey"), "ssh authentication failed"),
    (re.compile(r"Host key verification failed"), "ssh host key verification failed"),
    (re.compile(r"^sh: .*(No such file|not found)"), "command not found"),
    (re.compile(r"Read-only file system"), "read-only file system"),
)
ERROR_PATTERNS = (
    re.compile(r"file has vanished: "),
    re.compile(r"error: partial transfer|some files/attrs were not transferred"),
    re.compile(r"[Bb]roken pipe"),
    re.compile(r"error in rsync protocol data stream"),
    re.compile(r"^rsync(: \[\w+\])?: .*(failed|error)"),
)
WARNING_PATTERNS = (re.compile(r"readlink.*[Nn]o such file"),)


@dataclass(frozen=True)
class RsyncOutcome:
    """Classification of one rsync execution."""

    code: int
    severity: str  # success | warning | error | fatal
    message: str
    warnings: int = 0
    errors: int = 0
    detail: str = ""  # rsync's own first error line, when ``message`` only explains the exit code

    @property
    def status(self) -> str:
        """The summary ``Status:`` text, as Dirvish words it (plus the real cause, see ``detail``)."""
        if self.severity == "success":
            return "success"
        label = "fatal error" if self.severity == "fatal" else self.severity
        text = f"{label} ({self.code}) -- {self.message}"
        return f"{text}: {self.detail}" if self.detail else text

    @property
    def good(self) -> bool:
        return self.severity in ("success", "warning")

    @property
    def retry(self) -> bool:
        return self.severity == "error"

    @property
    def hook_status(self) -> str:
        """Value of ``DIRVISH_STATUS`` for post hooks."""
        return self.severity


QUOTED_NAME = re.compile(r'".*"')


def message_text(line: str) -> str:
    """The line without the file name rsync quotes in it (``write failed on "NAME": ...``).

    A client's file may be called "No space left on device": only rsync's and ssh's own words may
    decide how bad a failure is, never a name they quote.
    """
    return QUOTED_NAME.sub('""', line)


def classify(code: int, stderr_lines=()) -> RsyncOutcome:
    """Classify an rsync exit code together with the lines it wrote to stderr.

    Exit 24 (files vanished during the transfer) is always a warning, whatever the lines say.
    """
    fatal_text = None
    warnings = errors = 0
    cause = ""
    for raw_line in stderr_lines:
        line = message_text(raw_line)
        for rx, text in FATAL_PATTERNS:
            if rx.search(line):
                errors += 1
                if fatal_text is None:
                    fatal_text = text
                break
        else:
            if any(rx.search(line) for rx in WARNING_PATTERNS):
                warnings += 1
            elif any(rx.search(line) for rx in ERROR_PATTERNS):
                errors += 1
            if not cause and CAUSE_LINE.match(line):
                cause = raw_line
    if code == 0:
        return RsyncOutcome(0, "success", "success", warnings, errors)
    message = RSYNC_MESSAGES.get(code, "unknown rsync exit code")
    if code == 24:
        return RsyncOutcome(code, "warning", message, warnings, errors)
    if fatal_text is not None:
        return RsyncOutcome(code, "fatal", fatal_text, warnings, errors)
    detail = _one_line(cause)
    if code in FATAL_CODES:
        return RsyncOutcome(code, "fatal", message, warnings, errors, detail)
    return RsyncOutcome(code, "error", message, warnings, errors, detail)


# a line naming the cause: rsync's own error lines, ssh's, and dervish's when rsync could not start
CAUSE_LINE = re.compile(r"^(rsync(: \[\w+\])?: |ssh: |dervish: cannot run )")
MAX_DETAIL = 300


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 3] + "..."


class ErrorCollector:
    """Reads rsync's stderr from a pipe into memory, so that a full bank cannot swallow it.

    Keeps the first ``MAX_ERROR_LINES`` lines and, after that, only lines that name a fatal
    condition (classification needs those), counting the others.
    """

    def __init__(self, stream):
        self.stream = stream
        self.lines: List[str] = []
        self.dropped = 0

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            if len(self.lines) < MAX_ERROR_LINES or any(rx.search(message_text(line)) for rx, dummy in FATAL_PATTERNS):
                self.lines.append(line)
            else:
                self.dropped += 1
        self.stream.close()

    def result(self) -> List[str]:
        if self.dropped:
            return self.lines + [f"dervish: {self.dropped} more lines of rsync's error output not kept"]
        return list(self.lines)


def bounded_rsh(rsh: Optional[str], timeout) -> Optional[str]:
    """``rsh`` with the ssh options that bound a dead or hung client (see the module docstring).

    Only an ``ssh`` command is changed, and only options it does not set itself; ssh takes the first
    value given, so these also win over ``~/.ssh/config``.
    """
    if not rsh:
        return rsh
    words = rsh.split(None, 1)
    if words[0].rsplit("/", 1)[-1] != "ssh":
        return rsh
    seconds = int(timeout or 0)
    seconds = MAX_CONNECT_TIMEOUT if seconds <= 0 else min(seconds, MAX_CONNECT_TIMEOUT)
    values = {"ConnectTimeout": seconds, "ServerAliveInterval": max(1, seconds // 3), "ServerAliveCountMax": 3}
    lowered = rsh.lower()
    added = [f"-o {name}={values[name]}" for name in SSH_BOUND_OPTIONS if name.lower() not in lowered]
    if not added:
        return rsh
    return " ".join([words[0]] + added + words[1:])


def speed_limit_kbps(value) -> Optional[int]:
    """Dirvish's ``speed-limit`` (Mbit/s) as ``--bwlimit`` KB/s: value x 100."""
    if value in (None, "", 0):
        return None
    try:
        return max(1, int(round(float(str(value).strip()) * 100)))
    except ValueError:
        return None


def build_command(cfg, image_dir, source: str, ref_tree=None, remote: bool = False) -> List[str]:
    """Return the rsync argv (see the module docstring for the order)."""
    flags = cfg.flags
    image_dir = str(image_dir)
    argv = [cfg.rsync or "rsync", "-vrltH", "--delete"]
    for key, opt in (("permissions", "-pgo"), ("devices", "-D"), ("acls", "-A"), ("xattrs", "-X"),
                     ("numeric-ids", "--numeric-ids"), ("stats", "--stats")):
        if flags.get(key):
            argv.append(opt)
    if cfg.rsync_timeout:
        argv.append(f"--timeout={int(cfg.rsync_timeout)}")
    for key, opt in (("checksum", "-c"), ("sparse", "-S"), ("whole-file", "-W"), ("xdev", "-x"),
                     ("zxfer", "-z")):
        if flags.get(key):
            argv.append(opt)
    kbps = speed_limit_kbps(cfg.speed_limit)
    if kbps:
        argv.append(f"--bwlimit={kbps}")
    if cfg.password_file:
        argv.append(f"--password-file={cfg.password_file}")
    if cfg.rsync_client:
        argv.append(f"--rsync-path={cfg.rsync_client}")
    if remote and cfg.rsh and not source.split(":", 1)[-1].startswith(":"):
        argv.extend(["-e", bounded_rsh(cfg.rsh, cfg.rsync_timeout)])
    argv.extend(cfg.rsync_options or ())
    argv.append(f"--exclude-from={image_dir}/exclude")
    if ref_tree is not None:
        argv.append(f"--link-dest={ref_tree}")
    argv.append(source)
    argv.append(f"{image_dir}/tree")
    return argv


def keep_log_line(line: bytes) -> bool:
    """Dirvish's log filter for one line of rsync's output: drop directory lines (ending in ``/``)
    and link lines. Bytes, as rsync writes them: file names need not be UTF-8."""
    body = line.rstrip(b"\n")
    if body.endswith(b"/"):
        return False
    return b" -> " not in body and b" => " not in body


def execution_header(cycle: int) -> str:
    """Separator written to ``rsync_error`` before the stderr of execution ``cycle`` (from 0)."""
    return f"\n\n*** Execution cycle {cycle} ***\n\n"
