# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server wrapper's drive holds (``dervish-backup --holds/--acquire/--release``) read as results.

Shared by the module ``backup_drive`` and its action plugin: the action releases the drive with one
plain command on the server (no module shipped, no Python started there: a playbook's release is a
round trip at the end of every run), the module does everything else; both turn the wrapper's
answers into the same result through these functions.
"""

from __future__ import annotations

import re
import shlex

HOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_WRAPPER = "/usr/local/sbin/dervish-backup"
# ends each step's stdout in release_command's output, with the step's exit code
MARK = "@@dervish-backup-rc "


def parse_holds(text):
    """The wrapper's `--holds` KEY=VALUE lines as a dict; HOLD lines as a list of (holder, pid, live)."""
    info = {"HOLD": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "HOLD":
            fields = value.split()
            if len(fields) == 3:
                info["HOLD"].append((fields[0], fields[1], fields[2] == "live"))
        else:
            info[key] = value
    return info


def live_holders(info, without=None):
    return sorted({holder for holder, _pid, live in info["HOLD"] if live and holder != without})


def planned(info, state, holder):
    """What a run would do, from the state before it: (changed, mounted after)."""
    drive = bool(info.get("DRIVE"))
    mounted = info.get("MOUNTED") == "yes"
    if not drive:
        return False, False
    if state == "held":
        return not mounted, True
    unmounts = mounted and info.get("MOUNTED_BY_DERVISH") == "yes" and not live_holders(info, without=holder)
    return unmounts, mounted and not unmounts


def last_error(stderr):
    """The wrapper's last ERROR line (without its time stamp), else its last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line.split("ERROR: ", 1)[1] for line in lines if "ERROR: " in line]
    return errors[-1] if errors else (lines[-1] if lines else "")


def holds_failure(wrapper, rc, stderr):
    return (f"{wrapper} --holds exited {rc}: {last_error(stderr) or 'no message'} "
            "(is this host a dervish backup server, provisioned by backup_server?)")


def released(wrapper, holder, before, rc, stderr, after):
    """The result of ``wrapper --release holder`` from the holds before and after it: a module result,
    with ``failed`` and ``msg`` when the release failed (``after`` is not looked at then)."""
    drive = before.get("DRIVE", "")
    result = dict(changed=False, mount_point=before.get("MOUNT_POINT") or None, holder=holder)
    if rc != 0:
        why = last_error(stderr) or "no message"
        if rc == 4:
            msg = (f"could not unmount the backup drive from {result['mount_point']}: it is still mounted "
                   f"(is a process using it?); the hold of {holder} was dropped")
        elif rc == 64:
            msg = f"{wrapper} refused the request: {why}"
        else:
            msg = f"{wrapper} --release {holder} exited {rc}: {why}"
        return dict(result, failed=True, msg=msg, rc=rc)
    mounted = after.get("MOUNTED") == "yes"
    label = (after.get("DISKLABEL") or None) if (mounted or not drive) else None
    return dict(result, changed=bool(drive) and (before.get("MOUNTED") == "yes") != mounted, mounted=mounted,
                label=label, holds=live_holders(after))


def release_command(wrapper, holder):
    """One shell command: --holds, --release, --holds, each step's stdout ended by MARK and its exit code;
    stops after a failed step."""
    w, h = shlex.quote(wrapper), shlex.quote(holder)
    steps = [f"{w} --holds", f"{w} --release {h}", f"{w} --holds"]
    return "; ".join(f"{step}; r=$?; echo; echo \"{MARK}$r\"; [ $r -eq 0 ] || exit 0" for step in steps)


def split_steps(stdout):
    """release_command's stdout as [(step's stdout, exit code)], for the steps that ran."""
    steps, text = [], []
    for line in stdout.splitlines():
        if line.startswith(MARK):
            steps.append(("\n".join(text).strip("\n") + "\n", int(line[len(MARK):])))
            text = []
        else:
            text.append(line)
    return steps


def release_result(wrapper, holder, stdout, stderr):
    """release_command's output as the module's result for state=released."""
    steps = split_steps(stdout)
    why = last_error(stderr) or "no message"

    def failed(msg, rc=None, text=stdout):
        return dict(changed=False, holder=holder, failed=True, stdout=text, stderr=stderr, msg=msg,
                    **({} if rc is None else {"rc": rc}))

    def holds_of(step):
        """(the holds step ``step`` read, None), or (None, the failure) when it did not answer."""
        if len(steps) <= step:
            return None, failed(f"{wrapper} gave no answer to --holds: {why}")
        text, rc = steps[step]
        return (parse_holds(text), None) if rc == 0 else (None, failed(holds_failure(wrapper, rc, stderr), rc, text))

    before, failure = holds_of(0)
    if failure:
        return failure
    if len(steps) < 2:
        return failed(f"{wrapper} --release {holder} gave no exit code: {why}")
    out, rc = steps[1]
    after = {"HOLD": []}
    if rc == 0:
        after, failure = holds_of(2)
        if failure:
            return failure
    result = released(wrapper, holder, before, rc, stderr, after)
    if result.get("failed"):
        result.update(stdout=out)
    result["stderr"] = stderr
    return result
