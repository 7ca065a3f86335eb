#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: logrotate_dateext
short_description: Switch on logrotate's C(dateext) globally so rotated logs keep their names
version_added: 0.1.0
description:
  - Makes C(dateext) a global default in the main logrotate configuration file, so rotated logs are
    named C(<log>-YYYYMMDD) and keep that name until they expire, instead of being renamed C(.1) to
    C(.2) and so on every night. Hard-link snapshot backups then store each rotated log once.
  - The file is parsed with logrotate's own rules. Comments, C(include) lines, C({ ... }) blocks
    (several paths or globs before C({), over one or more lines) and C(postrotate)/C(prerotate)/
    C(firstaction)/C(lastaction)/C(preremove) scripts up to C(endscript) are understood; script text is
    never read as directives.
  - Global directives only affect the includes and blocks that come after them, so C(dateext) (and
    C(dateformat)) are inserted before the first C(include) or block, below a comment line saying that
    dervish manages them. A global C(nodateext) is replaced by C(dateext) instead. A global C(dateext)
    already before the first include or block means nothing to do.
  - C(nodateext) inside blocks of the main file and of included files and directories overrides the
    global setting for those logs. The module reports them in RV(nodateext_overrides) and warns, but
    never edits included files.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  path:
    description:
      - The main logrotate configuration file.
    type: path
    default: /etc/logrotate.conf
  state:
    description:
      - V(present) makes C(dateext) a global default.
      - V(absent) removes the C(dateext) and C(dateformat) lines this module manages (the lines right
        after its comment line). A global C(dateext) the module did not add is left alone, with a
        warning; a C(nodateext) it replaced is not restored.
    type: str
    choices: [present, absent]
    default: present
  dateformat:
    description:
      - Also set the global C(dateformat), for example V(-%Y%m%d) (logrotate's default) or
        V(-%Y%m%d-%s) when logs may rotate more than once a day.
      - Only the specifiers C(%Y) C(%m) C(%d) C(%H) C(%M) C(%S) C(%V) and C(%s) are allowed
        (logrotate(8)); whitespace and C(/) are refused. The stamps must sort lexically (year first),
        otherwise the module warns, because logrotate sorts names to find the oldest logs.
      - When omitted, an existing C(dateformat) is left as it is.
      - Ignored with O(state=absent).
    type: str
  backup:
    description:
      - Create a backup file including the timestamp information so you can get the original file
        back if you somehow clobbered it incorrectly.
    type: bool
    default: false
  validate:
    description:
      - Before writing, run C(logrotate -d) on the new content (saved to a temporary file, run from the
        directory of O(path) with a private state file) and on the current content. The include lines
        are followed, so the whole configuration including C(/etc/logrotate.d) is checked.
      - If the new content produces C(error:) lines that the current one does not, the module fails with
        logrotate's error text and leaves the file untouched. Errors the current file already has only
        give a warning.
      - Needs the C(logrotate) command. Also done in check mode (only temporary files are written).
    type: bool
    default: true
notes:
  - logrotate only reads the main file as root when its mode is 0644 or 0444 and it is owned by root;
    the module keeps the owner and mode of O(path).
  - Files of included directories are read in logrotate's order and with its built-in list of ignored
    extensions (C(.dpkg-old), C(.rpmsave), C(~), ...); C(tabooext) and C(taboopat) settings are not applied.
seealso:
  - name: logrotate(8)
    description: The manual page of logrotate.
    link: https://man7.org/linux/man-pages/man8/logrotate.8.html
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Name rotated logs by date (keeps backup snapshots small)
  dervish.backup.logrotate_dateext:

- name: Date extension with an explicit format, keeping a backup copy
  dervish.backup.logrotate_dateext:
    dateformat: "-%Y%m%d"
    backup: true

- name: Stop managing dateext
  dervish.backup.logrotate_dateext:
    state: absent
"""

RETURN = r"""
path:
  description: The configuration file that was inspected.
  returned: always
  type: str
  sample: /etc/logrotate.conf
nodateext_overrides:
  description:
    - C(nodateext) directives that switch the date extension off again for some logs.
    - C(block) is the block's paths; it is V(null) for a global C(nodateext) in an included file, which
      affects the blocks after it in that file.
  returned: always
  type: list
  elements: dict
  contains:
    file:
      description: File holding the directive.
      type: str
    line:
      description: Line number (1-based).
      type: int
    block:
      description: The paths of the enclosing block.
      type: str
  sample: [{"file": "/etc/logrotate.d/nginx", "line": 9, "block": "/var/log/nginx/*.log"}]
messages:
  description: What was changed, in words.
  returned: always
  type: list
  elements: str
  sample: ["added a global 'dateext' before the first include/block"]
backup_file:
  description: Name of the backup file.
  returned: changed and O(backup=true)
  type: str
  sample: /etc/logrotate.conf.2345.2026-11-26@14:30:02~
diff:
  description: The file before and after.
  returned: when diff mode is on
  type: dict
  sample: {"before": "weekly\n", "after": "weekly\ndateext\n", "before_header": "/etc/logrotate.conf",
           "after_header": "/etc/logrotate.conf"}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.dervish.backup.plugins.module_utils.config_files import read_text, write_atomically
from ansible_collections.dervish.backup.plugins.module_utils.logrotate_conf import (
    LogrotateConfError,
    collect_overrides,
    dateformat_is_sortable,
    disable_dateext,
    enable_dateext,
    logrotate_errors,
    new_errors,
    validate_dateformat,
)


def run_logrotate_check(module, logrotate, text, real_path, workdir):
    """Run ``logrotate -d`` on ``text``; return (rc, error lines with the real file name, full output)."""
    fd, tmp_conf = tempfile.mkstemp(prefix="logrotate-check-", suffix=".conf", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text, errors="surrogate_or_strict"))
        os.chmod(tmp_conf, 0o644)  # logrotate ignores config files with other modes when run as root
        state = os.path.join(workdir, "logrotate-check.state")
        cwd = os.path.dirname(real_path) or "."
        rc, out, err = module.run_command([logrotate, "-d", "-s", state, tmp_conf], cwd=cwd)
        output = (out or "") + (err or "")
        return rc, logrotate_errors(output, tmp_conf, real_path), output
    finally:
        os.unlink(tmp_conf)


def validate_with_logrotate(module, before, after, path):
    logrotate = module.get_bin_path("logrotate")
    if logrotate is None:
        module.fail_json(msg="validate=true needs the logrotate command, which was not found; install logrotate "
                             "or set validate=false", path=path)
    workdir = module.tmpdir
    rc_new, errs_new, _output = run_logrotate_check(module, logrotate, after, path, workdir)
    if rc_new == 0 and not errs_new:
        return
    if before is not None:
        rc_old, errs_old, _output = run_logrotate_check(module, logrotate, before, path, workdir)
    else:
        rc_old, errs_old = 0, []
    fresh = new_errors(errs_new, errs_old)
    if fresh or (rc_new != 0 and rc_old == 0):
        shown = fresh or errs_new or [f"logrotate -d exited with code {rc_new}"]
        module.fail_json(
            msg=f"logrotate -d rejects the new {path}, which was left untouched: {'; '.join(shown)}",
            path=path, validation_errors=shown, rc=rc_new,
        )
    module.warn(f"logrotate -d reports errors that the current configuration already has: {'; '.join(errs_new)}")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/logrotate.conf"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            dateformat=dict(type="str"),
            backup=dict(type="bool", default=False),
            validate=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    state = module.params["state"]
    dateformat = module.params["dateformat"]
    result = dict(changed=False, path=path, nodateext_overrides=[], messages=[])

    if dateformat is not None and state == "present":
        try:
            validate_dateformat(dateformat)
        except ValueError as exc:
            module.fail_json(msg=f"dateformat: {exc}", **result)
        if not dateformat_is_sortable(dateformat):
            module.warn(f"dateformat {dateformat!r} does not sort by date (year, month, day, ...): logrotate may "
                        f"delete the wrong rotated logs")

    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory", **result)
    exists = os.path.exists(path)
    if not exists:
        if state == "absent":
            module.exit_json(**result)
        module.fail_json(msg=f"{path} does not exist; is logrotate installed?", **result)
    try:
        before = read_text(path)
    except OSError as exc:
        module.fail_json(msg=f"cannot read {path}: {to_native(exc.strerror or exc)}", **result)

    try:
        edit = enable_dateext(before, dateformat) if state == "present" else disable_dateext(before)
    except (LogrotateConfError, ValueError) as exc:
        module.fail_json(msg=f"cannot parse {path}: {exc}", **result)
    result["messages"] = edit.messages
    after = edit.text

    overrides, problems = collect_overrides(path, after)
    result["nodateext_overrides"] = [o.as_dict() for o in overrides]
    for problem in problems:
        module.warn(f"could not check an included file for nodateext: {problem}")
    if state == "present":
        for o in overrides:
            where = f"block {o.block}" if o.block is not None else "global scope"
            module.warn(f"nodateext in {o.file} line {o.line} ({where}) overrides the global dateext")
    else:
        for message in edit.messages:
            if "not managed by dervish" in message:
                module.warn(message)

    if not edit.changed:
        module.exit_json(**result)

    result["changed"] = True
    if module._diff:
        result["diff"] = dict(before=before, after=after, before_header=path, after_header=path)

    if module.params["validate"]:
        validate_with_logrotate(module, before, after, path)

    if not module.check_mode:
        if module.params["backup"]:
            result["backup_file"] = module.backup_local(path)
        write_atomically(module, path, after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
