#!/usr/bin/env bash
# Every GPU figure the project claims, in one run of under 8 minutes on one CUDA GPU, written to
# benchmarks/results/*-cuda.md:
#
#   train-cuda.md     training steps/s, the original recipe (fixed batch, fp32) against ours (AMP, the
#                     batch chosen from free VRAM) and the share of free memory that batch uses; the
#                     out-of-memory split-and-retry (every piece in one batch, CUDA memory capped)
#   pipeline-cuda.md  infer real-time factor per stage for a 3-minute song, full-size models, the
#                     original way against ours (and the distilled student with --student CKPT)
#   infer-cuda.md     peak VRAM of `diffsvc infer` for a 1- and a 10-minute song (release-size denoiser)
#   preprocess-cuda.md  CREPE-full (and CREPE-tiny) throughput in `diffsvc preprocess`
#
# Usage (from anywhere; it works in the repository it lives in):
#   benchmarks/gpu.sh [--wheels DIR] [--student CKPT] [--python PY] [--venv DIR]
#   benchmarks/gpu.sh --dry-run          # on the CPU, tiny settings, results to a temporary folder:
#                                        # checks everything but CUDA itself
#   benchmarks/gpu.sh --fetch-wheels DIR # where a registry is reachable: download the wheels the
#                                        # GPU machine lacks into DIR (then carry DIR along)
#
# Setting up: the script makes a virtual environment (--venv, default .venv-gpu) and installs the
# project into it.
# - With a registry: `pip install torch==2.11.0 torchaudio==2.11.0 -e .` from PyPI.
# - Without one (--wheels DIR): everything from DIR, `pip install --no-index --find-links DIR`.
#   When the machine's python3 already holds torch 2.11 (the lent H200 machines' image does), the
#   environment sees it (--system-site-packages) and DIR needs only what the image lacks: librosa,
#   soundfile, torchcrepe, praat-parselmouth and their small dependencies (under 64 MiB; make it with
#   --fetch-wheels on a machine that reaches PyPI). Otherwise DIR must also hold torch 2.11 and
#   torchaudio 2.11 with their CUDA wheels (several GiB).
# On the device tool of this workplace: add `/.whl/` to .git/info/exclude, run
# `benchmarks/gpu.sh --fetch-wheels .whl` here, then `run` with carry [".whl"] and the command
# `benchmarks/gpu.sh --wheels .whl --results-to "$OUT"` (the tables also land in $OUT).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHEELS="" STUDENT="" DRY=0 VENV="$ROOT/.venv-gpu" PY="" COPY_TO="" FETCH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="$(cd "$2" && pwd)"; shift 2 ;;
    --student) STUDENT="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --results-to) COPY_TO="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --fetch-wheels) FETCH="$2"; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# What the GPU image lacks of the project's dependencies (pyproject.toml) and theirs.
EXTRA_WHEELS="librosa==0.11.0 soundfile==0.14.0 torchcrepe==0.0.24 praat-parselmouth==0.4.7 resampy audioread soxr
pooch decorator cffi pycparser platformdirs standard-aifc standard-sunau audioop-lts"
if [ -n "$FETCH" ]; then
  mkdir -p "$FETCH"
  for name in $EXTRA_WHEELS; do
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$FETCH" "$name" \
      || echo "gpu.sh: no wheel for $name (not needed on every Python; check)" >&2
  done
  du -sh "$FETCH"
  exit 0
fi

if [ "$DRY" = 1 ]; then
  # the CPU, tiny settings, the environment already in place; nothing in benchmarks/results changes
  PY="${PY:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
  DEVICE=cpu
  export DIFFSVC_BENCH_RESULTS="$(mktemp -d)"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  DEVICE=cuda
  if [ -z "$PY" ]; then
    base=python3
    if [ ! -x "$VENV/bin/python" ]; then
      if "$base" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.11") else 1)' 2>/dev/null; then
        "$base" -m venv --system-site-packages "$VENV"  # the image's torch 2.11 (and its CUDA libraries)
      else
        "$base" -m venv "$VENV"
      fi
    fi
    PY="$VENV/bin/python"
    if [ -n "$WHEELS" ]; then
      "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-build-isolation -e "$ROOT"
    else
      "$PY" -m pip install -q "torch==2.11.0" "torchaudio==2.11.0"
      "$PY" -m pip install -q -e "$ROOT"
    fi
  fi
  "$PY" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "gpu.sh: no CUDA device visible to torch; use --dry-run to check the script on the CPU" >&2; exit 1; }
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
RESULTS="${DIFFSVC_BENCH_RESULTS:-$ROOT/benchmarks/results}"
START=$(date +%s)
FAILED=()

# step NAME SECONDS COMMAND...: each step has its own time limit, so the whole stays under 8 minutes
step() {
  local name="$1" limit="$2"; shift 2
  echo "== $name (limit ${limit}s, $(( $(date +%s) - START ))s so far)"
  if ! timeout --kill-after=10 "$limit" "$@"; then
    echo "gpu.sh: step '$name' failed or ran out of time" >&2
    FAILED+=("$name")
  fi
}

STUDENT_ARGS=()
[ -n "$STUDENT" ] && STUDENT_ARGS=(--student "$STUDENT")
if [ "$DRY" = 1 ]; then
  step train 600 "$PY" benchmarks/train.py --gpu-only --dry-run --steps 2 --oom-check
  step pipeline 900 "$PY" benchmarks/pipeline.py --device cpu --tiny --repeats 1 "${STUDENT_ARGS[@]}"
  step infer-memory 600 "$PY" benchmarks/infer.py --device cpu --seconds 3 --short-minutes 0.05 \
    --long-minutes 0.1 --no-probe --out infer-dry-run.md
  step preprocess 600 "$PY" benchmarks/preprocess.py --device cpu --speed-only --methods crepe --seconds 2
else
  step train 150 "$PY" benchmarks/train.py --gpu-only --steps 30 --oom-check
  step pipeline 120 "$PY" benchmarks/pipeline.py --device cuda --seconds 180 --repeats 1 "${STUDENT_ARGS[@]}"
  step infer-memory 110 "$PY" benchmarks/infer.py --device cuda --full-size --seconds 30
  step preprocess 60 "$PY" benchmarks/preprocess.py --device cuda --speed-only --methods crepe,crepe-tiny \
    --seconds 120
fi

echo "== done in $(( $(date +%s) - START ))s; tables in $RESULTS:"
ls -l "$RESULTS"/*.md
if [ -n "$COPY_TO" ]; then
  mkdir -p "$COPY_TO" && cp "$RESULTS"/*-cuda.md "$COPY_TO"/ 2>/dev/null || true
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "gpu.sh: failed steps: ${FAILED[*]}" >&2
  exit 1
fi
