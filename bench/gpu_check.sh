#!/usr/bin/env bash
# The prepared GPU check (issue 18, part 8): one command, at most 8 minutes, no internet.
#
#   bench/gpu_check.sh          # on a machine with one NVIDIA GPU and Python 3.12 with torch (CUDA), JAX (CUDA),
#                               # flax, optax, numpy, scipy, h5py, matplotlib, rich, pyyaml, tensorboard preinstalled
#   bench/gpu_check.sh --cpu    # a dry run here, on CPU at tiny sizes, with this Python's packages (seconds)
#
# Before: bench/gpu_wheels.sh (here, with internet) downloads the missing wheels into build/gpu_wheels, which
# must travel with the working tree (it is gitignored). The check installs them with
# `pip install --no-index --no-deps --target "$SITE"` and runs bench/gpu_check.py one section per process, each
# under its own time limit (`timeout`), so a slow section only loses its own figures. Everything printed also
# goes to $OUT/gpu_check.log when $OUT is set. Environment: PYTHON (default python3), SITE (default /tmp/gpu_site).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/gpu_site}
CPU=""
case "${1:-}" in
  "") ;;
  --cpu) CPU="--cpu" ;;
  *) echo "gpu_check.sh: unknown argument '$1' (allowed: --cpu)" >&2; exit 2 ;;
esac
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/gpu_check.log") 2>&1
fi
# seconds per section: 30 (install) + 30 + 50 + 150 + 200 = 460 of the 480 allowed, leaving start-up slack;
# xland compiles PPO once per number of envs (3 times)
declare -A BUDGET=([env]=30 [sampler]=50 [offline]=150 [xland]=200)
if [[ -n "$CPU" ]]; then  # a dry run on a shared CPU is slow to start (torch, JAX) but never timed
  BUDGET=([env]=300 [sampler]=300 [offline]=300 [xland]=300)
fi
START=$SECONDS
echo "gpu_check: $(date -u +%FT%TZ) on $(hostname), $($PY --version 2>&1) ($(command -v "$PY")), repo at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if [[ -n "$CPU" ]]; then
  echo "gpu_check: dry run on CPU with this Python's own packages (the wheels are for Python 3.12; none installed)"
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
  shopt -s nullglob
  wheels=("$REPO"/build/gpu_wheels/*.whl)
  if (( ${#wheels[@]} == 0 )); then
    echo "gpu_check: no wheels in build/gpu_wheels: run bench/gpu_wheels.sh where there is internet and carry build/gpu_wheels" >&2
    exit 2
  fi
  rm -rf "$SITE"
  t0=$SECONDS
  if ! timeout 30 "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "${wheels[@]}"; then
    echo "gpu_check: installing the ${#wheels[@]} wheels into $SITE failed" >&2
    exit 1
  fi
  echo "gpu_check: installed ${#wheels[@]} wheels into $SITE in $((SECONDS - t0)) s"
  export PYTHONPATH="$REPO:$SITE"
fi

DATA=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_data.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
failed=()
for section in env sampler offline xland; do
  timeout -k 10 "${BUDGET[$section]}" "$PY" "$REPO/bench/gpu_check.py" --section "$section" --data "$DATA/procgen_synthetic" $CPU
  rc=$?
  if (( rc == 124 || rc == 137 )); then
    echo "gpu_check: section $section stopped at its ${BUDGET[$section]} s limit (rows printed above are complete)"
    failed+=("$section(timeout)")
  elif (( rc != 0 )); then
    echo "gpu_check: section $section failed with exit status $rc"
    failed+=("$section(rc=$rc)")
    [[ $section == env ]] && break  # no GPU where one was expected: nothing after it would mean anything
  fi
done
echo "gpu_check: total $((SECONDS - START)) s; ${#failed[@]} section(s) not complete${failed:+: ${failed[*]}}"
(( ${#failed[@]} == 0 ))
