"""Offline stand-in for ansible-test's get-pip bootstrap script.

ansible-test downloads get-pip.py from ci-files.testing.ansible.com, which is not reachable from
every machine; it accepts a script saved in ~/.ansible/test/cache/get_pip_<version>.py instead.
This one seeds pip with ensurepip, then lets that pip install the requested packages from the
package index configured for pip on this machine.
"""

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}

# ensurepip must run in a subprocess: in-process it sets PIP_CONFIG_FILE=/dev/null, hiding pip.conf.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", *args])
