#!/usr/bin/env bash
# Device checks for the model package, in one call (see scripts/benchmark_model.py):
#   model tests on the machine's torch/transformers, CUDA tests, CUDA and CPU throughput.
# Needs pydantic wheels in .whl_model/ (carried): the GPU image has no pydantic.
# Usage on the device machine: bash trainer_image/bench/gpu_model.sh   (logs and JSON lines land in $OUT)
set -o pipefail
# Carried files (.whl/, shared/) sit at the repository root; the trainer's scripts and configs under trainer_image/.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/trainer_image" || exit 1
OUT=${OUT:-/tmp/model_bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TOKENIZERS_PARALLELISM=false
if ls "$ROOT"/.whl_model/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl_model/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
B="python3 scripts/benchmark_model.py"
step() {  # step NAME TIMEOUT CMD...: run, keep the log, never stop the script
  local name=$1 limit=$2; shift 2
  echo "=== $name"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -E '^\{|passed|failed|error|Error' "$OUT/$name.log" | grep -v Warning | tail -6
  echo "--- $name rc=$rc $((SECONDS - t0))s"
}
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
step tests 150 python3 -m pytest -q -p no:cacheprovider "$ROOT"/tests/trainer/model
step cuda_gpt2_small_compiled 200 $B --device cuda --model gpt2-small --batch-size 16 --seq-len 1024 --steps 30
step cpu_eager 120 $B --device cpu --steps 20
step cuda_gpt2_small_eager 90 $B --device cuda --model gpt2-small --batch-size 16 --seq-len 1024 --steps 20 --no-compile
step cuda_gpt2_small_eager_chunked 90 $B --device cuda --model gpt2-small --batch-size 16 --seq-len 1024 --steps 20 \
  --no-compile --loss-chunk-size 4096
step cuda_llama_1b_compiled 200 $B --device cuda --model llama-1b --batch-size 8 --seq-len 1024 --steps 10 \
  --vocab-size 32000
step cpu_compiled 200 $B --device cpu --steps 10 --compile
