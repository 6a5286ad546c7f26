#!/usr/bin/env bash
# The main job, from a fresh clone: pinned venv -> build the variants for this
# machine -> publish them into a local Hugging Face cache -> get_kernel offline
# -> kernelize SmolLM2 -> generate -> identical text, with timings.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/venv.sh
python -m builder build
CACHE="$REPO_ROOT/.cache/hub"
python -m builder publish-cache --cache-dir "$CACHE"
HF_HUB_OFFLINE=1 KERNELS_CACHE="$CACHE" python scripts/main_job.py "$@"
