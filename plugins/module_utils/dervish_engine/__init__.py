"""dervish snapshot engine: Dirvish-compatible rsync/hard-link images.

Plain standard-library Python (3.9+), no Ansible import. The collection's modules ship it
to the backup server as module_utils; pip installs the same files as the ``dervish`` command.
Modules inside this package import each other relatively only, so both ways work.
"""

__version__ = "0.1.0"
