# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module that reads the engine's banks on a backup server documents alike."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  config:
    description:
      - The engine's master configuration (its C(bank:) lines name the banks).
      - When unset, C(/etc/dervish/master.conf), else C(/etc/dirvish/master.conf), as for the C(dervish) command.
    type: path
notes:
  - Run it as root (C(become)); banks and images are root-only.
"""
