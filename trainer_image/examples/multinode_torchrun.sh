#!/bin/bash
# Two nodes, 8 GPUs each, with torchrun. Run this on every node with its NODE_RANK (0 on the master).
#   MASTER_ADDR=10.0.0.1 NODE_RANK=0 bash examples/multinode_torchrun.sh config/llama-160m.yaml
set -euo pipefail
CONFIG=${1:-config/llama-160m.yaml}
NNODES=${NNODES:-2}
GPUS=${GPUS_PER_NODE:-8}
torchrun --nnodes="$NNODES" --node-rank="${NODE_RANK:?set NODE_RANK}" --nproc-per-node="$GPUS" \
  --master-addr="${MASTER_ADDR:?set MASTER_ADDR}" --master-port="${MASTER_PORT:-29500}" \
  scripts/run_training.py --config "$CONFIG" run.name="${RUN_NAME:-multinode}" \
  distributed.strategy=ddp distributed.devices="$GPUS" distributed.num_nodes="$NNODES"
