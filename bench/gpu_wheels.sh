#!/usr/bin/env bash
# Downloads the wheels bench/gpu_check.sh installs on the GPU machine (no internet there) into build/gpu_wheels:
# the packages of bench/gpu_wheels.txt, for CPython 3.12 on x86-64 Linux, without their dependencies (the list
# names each one the check imports that is not preinstalled there). Binary wheels are manylinux2014 or
# manylinux_2_28 (scikit-learn 1.9 ships only the latter: glibc >= 2.28 there, as the CUDA builds of torch need too).
# A "# build" entry has no wheel on PyPI (sdist only, pure Python) and is built into one here.
# Prints each wheel and the total size, and fails when the total is over 60 MiB (the copy to that machine
# carries 64 MiB in all). Then: carry build/gpu_wheels (it is gitignored) and run bench/gpu_check.sh there.
#
#   bench/gpu_wheels.sh          # PYTHON (default python3) runs pip
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=build/gpu_wheels
LIMIT_MIB=60
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
binary=()
build=()
while IFS= read -r line; do
  spec=${line%%#*}
  spec=${spec//[[:space:]]/}
  [[ -z $spec ]] && continue
  if [[ $line == *"# build"* ]]; then build+=("$spec"); else binary+=("$spec"); fi
done < bench/gpu_wheels.txt
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12\
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$DEST.partial" "${binary[@]}"
if (( ${#build[@]} )); then
  "$PY" -m pip wheel --quiet --no-deps -w "$DEST.partial" "${build[@]}"
  for spec in "${build[@]}"; do  # a wheel built here must be pure Python, or it would not run on 3.12 there
    if ! ls "$DEST.partial/${spec%%==*}"-*-py3-none-any.whl >/dev/null 2>&1 && ! ls "$DEST.partial/${spec%%==*}"-*-py2.py3-none-any.whl >/dev/null 2>&1; then
      echo "gpu_wheels.sh: $spec did not build into a pure-Python wheel" >&2
      exit 1
    fi
  done
fi
count=$(ls "$DEST.partial"/*.whl | wc -l)
want=$(( ${#binary[@]} + ${#build[@]} ))
if (( count != want )); then
  echo "gpu_wheels.sh: $count wheels for $want entries of bench/gpu_wheels.txt" >&2
  exit 1
fi
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"  # complete or absent: a failed download never leaves a half folder under the real name
ls -l "$DEST"/*.whl | awk '{printf "%10.2f MiB  %s\n", $5 / 1048576, $NF}'
bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
echo "gpu_wheels.sh: $count wheels, $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in $DEST (limit $LIMIT_MIB MiB)"
if (( bytes > LIMIT_MIB * 1048576 )); then
  echo "gpu_wheels.sh: over the $LIMIT_MIB MiB limit" >&2
  exit 1
fi
