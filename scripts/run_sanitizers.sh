#!/usr/bin/env bash
# Runs compute-sanitizer's memcheck, racecheck, initcheck and synccheck over
# scripts/sanitize_shapes.py, one log per tool in LOG_DIR, then one summary
# line per tool with its error count. Exit status 1 if any tool reports an
# error, its summary line is missing (the tool or Python crashed), or the
# script finds a result that differs from HF's.
#
#   scripts/run_sanitizers.sh "$OUT/sanitizers"
#
# Environment: PYTHON (default python), COMPUTE_SANITIZER (default: on PATH,
# else $CUDA_HOME/bin or /usr/local/cuda/bin), RMSNORM_SANITIZER_BUILD=1 to
# build the CUDA variant first, RMSNORM_SANITIZER_TOOLS to run a subset
# ("memcheck synccheck"). racecheck takes the --quick third of the shapes;
# racecheck and synccheck instrument only the kernel's own launches; initcheck
# tracks every kernel and counts the errors raised in ours.
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 LOG_DIR" >&2
  exit 2
fi
LOG_DIR="$1"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
TOOLS="${RMSNORM_SANITIZER_TOOLS:-memcheck racecheck initcheck synccheck}"
mkdir -p "$LOG_DIR"
cd "$REPO_ROOT" || exit 2

SANITIZER="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || true)}"
for candidate in "${CUDA_HOME:-}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer; do
  if [ -z "$SANITIZER" ] && [ -x "$candidate" ]; then SANITIZER="$candidate"; fi
done
if [ -z "$SANITIZER" ]; then
  echo "error: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2
  exit 2
fi

if [ "${RMSNORM_SANITIZER_BUILD:-0}" = 1 ]; then
  "$PYTHON" -m builder build --backend cuda > "$LOG_DIR/build.log" 2>&1 || {
    echo "error: build failed, see $LOG_DIR/build.log" >&2
    exit 2
  }
fi

# Error count from a tool's log: "ERROR SUMMARY: N errors" (memcheck,
# initcheck, synccheck) or "RACECHECK SUMMARY: ... (N errors, M warnings)".
error_count() {
  local log="$1" n
  n="$(grep -Eo 'ERROR SUMMARY: [0-9]+ error' "$log" | tail -n 1 | grep -Eo '[0-9]+')"
  if [ -z "$n" ]; then
    n="$(grep -E 'RACECHECK SUMMARY' "$log" | tail -n 1 | grep -Eo '\([0-9]+ error' | grep -Eo '[0-9]+')"
  fi
  echo "${n:-missing}"
}

status=0
summary=()
for tool in $TOOLS; do
  args=()
  flags=(--tool "$tool")
  case "$tool" in
    memcheck) ;;
    racecheck) args=(--quick); flags+=(--kernel-name kns=rms_norm) ;;
    synccheck) flags+=(--kernel-name kns=rms_norm) ;;
    # Every kernel is tracked (a --kernel-name filter leaves the writes of
    # torch's kernels untracked, so every input would look uninitialized) and
    # every error printed; the count below is of errors raised in our kernels.
    # ATen's reduce_kernel (the script's HF references) reads allocation
    # padding and is reported separately.
    initcheck) flags+=(--print-limit 1000000) ;;
    *) echo "error: unknown tool $tool" >&2; exit 2 ;;
  esac
  log="$LOG_DIR/sanitizer-$tool.log"
  start=$SECONDS
  "$SANITIZER" "${flags[@]}" "$PYTHON" scripts/sanitize_shapes.py "${args[@]}" > "$log" 2>&1
  rc=$?
  errors="$(error_count "$log")"
  others=""
  if [ "$tool" = initcheck ] && [ "$errors" != missing ]; then
    ours="$(grep -A1 'Uninitialized' "$log" | grep -c '^=========     at .*rmsnorm::' || true)"
    others="; $((errors - ours)) more in other kernels ($(grep -A1 'Uninitialized' "$log" \
      | grep '^=========     at ' | grep -v 'rmsnorm::' | sed -E 's/^=========     at (\[clone )?(void )?([A-Za-z_:]+).*/\3/' \
      | sort -u | tr '\n' ' ' | sed 's/ $//'))"
    errors="$ours"
  fi
  cases="$(grep -Eo '[0-9]+ shapes, [0-9]+ cases on [a-z]+, [0-9]+ mismatches' "$log" | tail -n 1)"
  line="$tool: ${errors} errors${others}; ${cases:-no case summary}; exit ${rc}; $((SECONDS - start)) s; log $log"
  summary+=("$line")
  echo "$line"
  if [ "$errors" != 0 ] || [ "$rc" -ne 0 ] || [ -z "$cases" ]; then status=1; fi
done

printf '%s\n' "${summary[@]}" > "$LOG_DIR/summary.txt"
if [ "$status" -ne 0 ]; then
  echo "FAILED: a sanitizer reported errors or did not finish (see $LOG_DIR)" >&2
fi
exit "$status"
