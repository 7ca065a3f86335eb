#!/usr/bin/env bash
# Run `ansible-test sanity` on a real-path copy of the collection.
# ansible-test needs the collection at .../ansible_collections/<namespace>/<name> with no symlink
# in the path, so the tracked (and new, not ignored) files are copied to a scratch tree first.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
WORK=${SANITY_WORK:-$REPO/.ansible/sanity}
COPY=$WORK/ansible_collections/dervish/backup

rm -rf "$WORK/ansible_collections"
mkdir -p "$COPY"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
   [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$COPY"

# ansible-test fetches get-pip.py from a host that may be unreachable; give it the offline stand-in.
export HOME=${SANITY_HOME:-$WORK/home}
PIP_VERSION=$("$VENV/bin/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
mkdir -p "$HOME/.ansible/test/cache"
cp "$REPO/scripts/get-pip-offline.py" "$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"

cd "$COPY"
# ansible-test lists a collection's files with git; without a repository it skips every target
git init -q . && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
export PATH="$VENV/bin:$PATH"
exec ansible-test sanity --python 3.11 --local --color no "$@"
