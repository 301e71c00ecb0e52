#!/usr/bin/env bash
# Issue 5's GPU check as one script: step time of CE-2, GS and the floor variant with peak GPU memory at the
# paper's settings (EfficientNet-B4, batch 32, 320 px, bf16, channels_last), and the training loader's
# images/s on a SynthFF set generated first. Adds its row to $OUT/step_time.md (.json beside it) and writes
# $OUT/gpu_check.json (OUT defaults to reports/).
#
#   bash bench/gpu_check.sh                                              # a CUDA machine with the requirements
#   DEVICE=cpu SIZE=64 BATCH=8 REPEATS=2 PRESET=mini bash bench/gpu_check.sh   # a dry run of the script on CPU
#
# On a device machine whose image lacks faiss (gsrepro.decoupling imports it), carry its wheel: here,
# `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl
# faiss-cpu`, and there `pip install --no-index --no-deps --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
out=${OUT:-reports}
device=${DEVICE:-cuda}
data=$(mktemp -d)/synthff
"$py" -m gsrepro synth --preset "${PRESET:-synth}" --out "$data" --quiet
args=(--device "$device" --backbone efficientnet_b4 --batch "${BATCH:-32}" --size "${SIZE:-320}" --repeats "${REPEATS:-30}"
      --floor --data "$data" --workers "${WORKERS:-8}" --out "$out/step_time.md" --json "$out/gpu_check.json")
[ "$device" = cpu ] || args+=(--amp bf16 --channels-last)
"$py" bench/step_time.py "${args[@]}"
