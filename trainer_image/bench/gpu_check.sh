#!/usr/bin/env bash
# Speed check on one H100/H200, one command, under 8 minutes. Run from the repository root:
#     bash bench/gpu_check.sh                       # everything
#     GPU_CHECK_STEPS="shakespeare" bash bench/gpu_check.sh   # a subset (names below), e.g. to rerun one part
#
#  peak        the card's measured bf16 matmul peak (8192^3 products); MFU below is against it
#  base        gpt2-small at 16 x 1024, bf16, compiled: the real pipeline and the bare PyTorch loop
#              (scripts/benchmark.py); host syncs counted inside the timed pipeline steps (expect at most 1 step
#              with syncs: the last one logs); pipeline/bare ratio and their losses
#  cudnn       model.attention_backend=cudnn; losses vs base (torch 2.11's auto already picks cuDNN on an H200 for
#              these shapes: measured 1.001x); not in the default list
#  eager       the pipeline with compile off; its losses are checked against the compiled run's, same steps
#  fp8         training.fp8=true (torchao float8), when torchao imports; its 50 losses checked against base's
#  no_fused    training.fused_adamw=false
#  no_tf32     training.tf32=false
#  autobatch   training.batch_size=auto (the searched micro-batch and its tokens/s, bare loop)
#  autotune    model.compile_mode=max-autotune-no-cudagraphs (inductor benchmarks matmul kernels: a long first
#              compile); not in the default list: GPU_CHECK_STEPS="peak autotune"
#  model       scripts/benchmark_model.py: the native model in a bare loop (gpt2-small, 16 x 1024, bf16, compiled),
#              then 3 profiled steps: GPU time per step by kernel category and the top kernels
#  model_cudnn the same with model.attention_backend=cudnn (model_* below force it too)
#  model_coord ... cudnn and inductor's coordinate-descent tuning of its generated kernels (env
#              TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1)
#  model_cg    ... cudnn and model.compile_mode=reduce-overhead (CUDA graphs)
#  model_autotune ... cudnn and model.compile_mode=max-autotune-no-cudagraphs (long compile)
#  best        the pipeline and the bare loop (scripts/benchmark.py) with the fastest model_* variant's settings
#  gputests    the GPU-marked tests (tests/model/test_gpu.py, tests/training/test_gpu_strategies.py), last
#  shakespeare config/shakespeare-char-gpu.yaml end to end: whole-process time and validation loss (its time is
#              reserved: the other steps are skipped when they would eat into it)
# Every step has a timeout. A table goes to stdout and $OUT/table.md (logs and JSON lines in $OUT too).
#
# The GPU image has torch, lightning and transformers but not pydantic, datasets, torchdata or torchao: their
# wheels come carried in .whl/ (git-ignored), as does tinyshakespeare.txt (or set SHAKESPEARE=path).
# GPU_CHECK_SMOKE=1 runs the same steps tiny on a CPU (checks this script, not the GPU).
set -o pipefail
# Carried files (.whl/, shared/) sit at the repository root; the trainer's scripts and configs under trainer_image/.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/trainer_image" || exit 1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false  # bytecode caching on: whole-process times as users see them
if ls "$ROOT"/.whl/*.whl >/dev/null 2>&1 && [ -z "$GPU_CHECK_SMOKE" ]; then
  python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/site "$ROOT"/.whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
STEPS=${GPU_CHECK_STEPS:-peak base model shakespeare gputests eager fp8 no_fused autobatch no_tf32}
# The model_* steps and best: GPU_CHECK_STEPS="peak model model_cudnn gputests model_coord model_cg best model_autotune"
BUDGET_S=${BUDGET_S:-470}     # the whole script, machine start-up not included
SHK_RESERVE_S=${SHK_RESERVE_S:-190}  # kept for the shakespeare run
CACHE=/tmp/dlt-gpu-check-cache
SHK=${SHAKESPEARE:-}
for f in "$ROOT"/.whl/tinyshakespeare.txt "$ROOT"/shared/data/tinyshakespeare.txt "$ROOT"/../shared/data/tinyshakespeare.txt; do
  [ -z "$SHK" ] && [ -f "$f" ] && SHK=$f
done

ATTN=cudnn
if [ -n "$GPU_CHECK_SMOKE" ]; then
  ATTN=math  # cuDNN needs a GPU: the smoke run checks the plumbing with a CPU kernel
  BENCH=(--config config/debug.yaml --steps 4 --warmup 2 logging.sample_tokens=0 logging.interval=1000
         model.padded_vocab_size=4160)
  SHK_ARGS=(training.max_steps=30 training.eval_interval=10 training.eval_steps=2 model.num_layers=2
            model.hidden_size=64 model.num_attention_heads=2 data.seq_len=32 training.batch_size=8
            data.num_workers=0 logging.sample_tokens=8)
  MODEL=(--device cpu --num-layers 2 --hidden-size 64 --heads 2 --batch-size 2 --seq-len 32 --vocab-size 256
         --steps 2 --warmup 1 --profile 1)
else
  # gpt2-small, 16 x 1024 tokens per step. The embedded corpus yields at most ~36k BPE tokens, so a 32k BPE is
  # trained and the embedding/head are padded to 50304 rows (GPT-2's 50257 rounded up to 64, as nanoGPT does):
  # 124M parameters, GPT-2's shape. 50 steps in all (10 untimed): the losses compared below cover all 50.
  BENCH=(--config config/gpt2-small.yaml --steps 40 --warmup 10 data.seq_len=1024 training.batch_size=16
         model.padded_vocab_size=50304
         training.precision=bf16-mixed tokenizer.vocab_size=32768 tokenizer.train_sample_bytes=20000000
         training.learning_rate=0.0006 training.warmup_steps=5 logging.interval=1000 logging.sample_tokens=0)
  SHK_ARGS=()
  MODEL=(--device cuda --model gpt2-small --batch-size 16 --seq-len 1024 --vocab-size 50304 --steps 40 --warmup 10
         --profile 3)
fi
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
reserve() { wanted shakespeare && [ -n "$SHK" ] && echo "$SHK_RESERVE_S" || echo 0; }

step() {  # step NAME LIMIT_S CMD...: run with a timeout unless not wanted or the budget is spent; keep the log
  local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  local left=$((BUDGET_S - $(reserve) - SECONDS))
  if [ "$left" -lt 30 ]; then echo "=== $name: skipped (time budget spent)"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.jsonl" 2> "$OUT/$name.log"
  local rc=$?
  grep -E 'error|Error|batch_size auto' "$OUT/$name.log" | grep -v -i warn | tail -3
  echo "--- $name rc=$rc $((SECONDS - t0))s"
  return $rc
}

python3 -c "import torch, lightning, transformers; print('torch', torch.__version__, 'lightning', lightning.__version__,
'transformers', transformers.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

if wanted peak && [ -z "$GPU_CHECK_SMOKE" ]; then  # bf16 matmul peak of this card, for MFU (issue: >= 63% of it)
  PEAK=$(python3 - <<'EOF'
import torch
a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
for _ in range(3):
    a @ b
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(20):
    a @ b
end.record()
torch.cuda.synchronize()
print(f"{20 * 2 * 8192**3 / (start.elapsed_time(end) / 1e3):.4e}")
EOF
)
  echo "=== peak: measured bf16 matmul ${PEAK} FLOP/s"
  echo "{\"measured_bf16_peak_flops\": $PEAK}" > "$OUT/peak.json"
  [ -n "$PEAK" ] && BENCH+=("logging.peak_flops=$PEAK") && MODEL+=(--peak-flops "$PEAK")
fi
B=(python3 scripts/benchmark.py "${BENCH[@]}" --cache-dir "$CACHE")

variant() {  # variant NAME ENV OVERRIDE...: benchmark_model with the env and the flags matching the overrides
  local name=$1 envs=$2; shift 2
  wanted "$name" || return 0
  echo "$envs|$*" > "$OUT/$name.variant"  # for the best step: how the pipeline gets the same settings
  local flags=() o
  for o in "$@"; do
    case $o in
      model.attention_backend=*) flags+=(--attention-backend "${o#*=}") ;;
      model.compile_mode=*) flags+=(--compile-mode "${o#*=}") ;;
    esac
  done
  step "$name" "${VARIANT_LIMIT_S:-120}" env $envs python3 scripts/benchmark_model.py "${MODEL[@]}" "${flags[@]}"
}
COORD=TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1
variant model ""
variant model_cudnn "" "model.attention_backend=$ATTN"

step base 200 "${B[@]}" --variants pipeline,bare --losses --sync-debug
step cudnn 120 "${B[@]}" --variants pipeline --losses "model.attention_backend=$ATTN"

if wanted shakespeare; then
  if [ -n "$SHK" ]; then
    limit=$((BUDGET_S - SECONDS)); [ "$limit" -lt 60 ] && limit=60; [ "$limit" -gt 240 ] && limit=240
    echo "=== shakespeare: config/shakespeare-char-gpu.yaml, whole process (limit ${limit}s)"
    t0=$(date +%s.%N)
    timeout "$limit" python3 scripts/run_training.py --config config/shakespeare-char-gpu.yaml --overwrite \
      "data.path=$SHK" run.output_dir=/tmp/dlt-gpu-runs run.name=shk "${SHK_ARGS[@]}" > "$OUT/shakespeare.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    python3 - "$rc" "$t0" "$t1" "$OUT/shakespeare.json" <<'EOF'
import json, sys
from pathlib import Path
rc, t0, t1, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
s = Path("/tmp/dlt-gpu-runs/shk/summary.json")
d = json.loads(s.read_text()) if s.is_file() and rc == 0 else {}
keep = ("final_val_loss", "best_val_loss", "wall_time_s", "train_time_s", "tokens_per_s", "steps", "stop_reason")
row = {"exit": rc, "process_s": round(t1 - t0, 1), **{k: d.get(k) for k in keep}}
out.write_text(json.dumps(row) + "\n")
print(row)
EOF
  else
    echo "=== shakespeare: skipped (no tinyshakespeare.txt; set SHAKESPEARE=path)"
  fi
fi
SHK_RESERVE_S=0  # spent

step gputests 150 python3 -m pytest -q -p no:cacheprovider -m gpu "$ROOT"/tests/trainer/model/test_gpu.py \
  "$ROOT"/tests/trainer/training/test_gpu_strategies.py
wanted gputests && [ -f "$OUT/gputests.jsonl" ] && tail -4 "$OUT/gputests.jsonl"
variant model_coord "$COORD" "model.attention_backend=$ATTN"
variant model_cg "" "model.attention_backend=$ATTN" model.compile_mode=reduce-overhead
if wanted best; then
  IFS='|' read -r BEST_ENV BEST_OVR < <(python3 bench/gpu_table.py --best "$OUT")
  echo "=== best: env [$BEST_ENV] overrides [$BEST_OVR]"
  if ! step best 200 env $BEST_ENV "${B[@]}" --variants pipeline,bare --losses $BEST_OVR && [ -n "$BEST_ENV$BEST_OVR" ]
  then
    STEPS+=" cudnn"; step cudnn 120 "${B[@]}" --variants pipeline --losses "model.attention_backend=$ATTN"
  fi
fi
VARIANT_LIMIT_S=400 variant model_autotune "" "model.attention_backend=$ATTN" \
  model.compile_mode=max-autotune-no-cudagraphs
step eager 100 "${B[@]}" --variants pipeline --losses model.compile=false
if python3 -c "import torchao.float8" 2>/dev/null; then
  step fp8 150 "${B[@]}" --variants pipeline --losses training.fp8=true
else
  wanted fp8 && echo "=== fp8: skipped (torchao not importable)"
fi
step autobatch 90 "${B[@]}" --variants bare --steps 4 --warmup 2 training.batch_size=auto model.compile=false
step no_fused 90 "${B[@]}" --variants pipeline --steps 20 --warmup 5 training.fused_adamw=false
step no_tf32 90 "${B[@]}" --variants pipeline --steps 20 --warmup 5 training.tf32=false
step autotune 400 "${B[@]}" --variants pipeline --steps 20 --warmup 5 model.compile_mode=max-autotune-no-cudagraphs

python3 bench/gpu_table.py "$OUT"
echo "total ${SECONDS}s"
