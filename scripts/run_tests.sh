#!/usr/bin/env bash
# The test command: pinned venv, build every variant this machine can build
# (nvcc errors fail here), then the whole suite. Tests that need a GPU skip
# cleanly without one. Exit status is pytest's, and "no tests ran" fails too.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/venv.sh
python -m builder build
set +e
python -m pytest tests -q -ra -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
