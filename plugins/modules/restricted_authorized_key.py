#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restricted_authorized_key
short_description: Authorise a key exactly once, with its options, and nowhere else
version_added: 0.1.0
description:
  - Makes every line of O(path) that carries the public key O(key) (with any options, any comment,
    anywhere in the file) exactly one managed line, C(<key_options> <key>); the first such line is
    replaced, later ones are removed, and the line is appended when there is none.
  - Lines carrying the key are removed from the files in O(purge) (by default C(authorized_keys2),
    which sshd also reads), so no copy of the key without the options is left that would grant more
    than the managed line (for dervish, a root shell from any address instead of the gate).
  - A line carries the key when one of its blank-separated words is the key's base64 body; comment
    lines (C(#)) and the other keys stay byte for byte.
  - Unlike M(ansible.posix.authorized_key) without C(exclusive), a stray copy of the key is never left
    in place; unlike C(exclusive), the file's other keys are kept.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  key:
    description:
      - The public key, C(<type> <base64> [comment]), as in a C(.pub) file, without options.
    type: str
    required: true
  key_options:
    description:
      - The options that restrict the key, e.g. C(from="192.0.2.1",restrict,command="/usr/local/sbin/dervish-gate").
    type: str
    required: true
  path:
    description:
      - The C(authorized_keys) file that gets the managed line; created (and its directory, mode C(0700))
        when missing.
    type: path
    default: /root/.ssh/authorized_keys
  purge:
    description:
      - Other files sshd reads keys from; every line carrying the key is removed from those that exist.
    type: list
    elements: path
    default: [/root/.ssh/authorized_keys2]
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Authorise the backup server's key for the gate only
  dervish.backup.restricted_authorized_key:
    key: "{{ server_public_key }}"
    key_options: from="192.0.2.10",restrict,command="/usr/local/sbin/dervish-gate"
    owner: root
    group: root
    mode: "0600"
"""

RETURN = r"""
line:
  description: The managed line.
  returned: always
  type: str
replaced:
  description: Lines of O(path) carrying the key that were rewritten or removed (not the managed line kept as it is).
  returned: always
  type: int
purged:
  description: Per file of O(purge), the number of lines carrying the key removed from it.
  returned: always
  type: dict
"""

import os
import re
import tempfile
from dataclasses import dataclass
from typing import List, Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

KEY_RE = re.compile(r"(?P<type>(?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+(?P<body>[A-Za-z0-9+/]+={0,3})"
                    r"(?:\s+(?P<comment>.*))?")


class AuthorizedKeyError(Exception):
    """A parameter that cannot be used."""


@dataclass(frozen=True)
class Edit:
    text: str
    replaced: int  # lines carrying the key that were not already the managed line


def parse_key(key: str) -> Tuple[str, str]:
    """(the key as written in the line, its base64 body)."""
    match = KEY_RE.fullmatch(key.strip())
    if match is None:
        raise AuthorizedKeyError(f"key: {key.strip()[:60]!r} is not a public key '<type> <base64> [comment]' "
                                 "(without options)")
    return " ".join(key.split()), match.group("body")


def carries(line: str, body: str) -> bool:
    return not line.lstrip().startswith("#") and body in line.split()


def split_lines(text: str) -> List[str]:
    return text.splitlines()


def join_lines(lines: List[str]) -> str:
    return "".join(line + "\n" for line in lines)


def edit_authorized_keys(text: str, body: str, managed: str) -> Edit:
    """Every line carrying ``body`` becomes ``managed``, exactly once (where the first one was)."""
    out: List[str] = []
    placed = False
    replaced = 0
    for line in split_lines(text):
        if not carries(line, body):
            out.append(line)
            continue
        if line != managed or placed:
            replaced += 1
        if not placed:
            out.append(managed)
            placed = True
    if not placed:
        out.append(managed)
    return Edit(join_lines(out), replaced)


def purge_key(text: str, body: str) -> Edit:
    lines = split_lines(text)
    kept = [line for line in lines if not carries(line, body)]
    return Edit(join_lines(kept) if kept or text else "", len(lines) - len(kept))


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def write(module: AnsibleModule, path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".ansible-tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
        if os.path.exists(path):
            st = os.stat(path)
            os.chmod(tmp, st.st_mode & 0o7777)
            os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o600)
    except OSError:
        os.unlink(tmp)
        raise
    module.atomic_move(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            key=dict(type="str", required=True, no_log=False),
            key_options=dict(type="str", required=True, no_log=False),
            path=dict(type="path", default="/root/.ssh/authorized_keys"),
            purge=dict(type="list", elements="path", default=["/root/.ssh/authorized_keys2"]),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    result = dict(changed=False, line="", replaced=0, purged={})
    try:
        key, body = parse_key(params["key"])
    except AuthorizedKeyError as exc:
        module.fail_json(msg=str(exc), **result)
    options = params["key_options"].strip()
    if not options or any(char in options for char in "\n\r"):
        module.fail_json(msg=f"key_options: {options[:80]!r} must be one line of options, e.g. "
                             'from="192.0.2.1",restrict,command="/usr/local/sbin/dervish-gate"', **result)
    managed = f"{options} {key}"
    result["line"] = managed

    changes = []  # (path, before, after, existed)
    try:
        existed = os.path.exists(path)
        before = read(path) if existed else ""
        edit = edit_authorized_keys(before, body, managed)
        result["replaced"] = edit.replaced
        if edit.text != before:
            changes.append((path, before, edit.text, existed))
        for other in params["purge"]:
            if other == path or not os.path.isfile(other):
                continue
            text = read(other)
            purged = purge_key(text, body)
            if purged.replaced:
                result["purged"][other] = purged.replaced
                changes.append((other, text, purged.text, True))
    except OSError as exc:
        module.fail_json(msg=f"cannot read {exc.filename}: {to_native(exc.strerror or exc)}", **result)

    result["diff"] = [dict(before_header=p, after_header=p, before=b, after=a) for p, b, a, dummy in changes]
    result["changed"] = bool(changes)
    if changes and not module.check_mode:
        for target, _before, after, _existed in changes:
            try:
                write(module, target, after)
            except OSError as exc:
                module.fail_json(msg=f"cannot write {target}: {to_native(exc.strerror or exc)}", **result)
    if os.path.exists(path) or not module.check_mode:
        file_args = module.load_file_common_arguments(params, path=path)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
