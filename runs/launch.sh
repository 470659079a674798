# Sourced by the stage scripts: sets LAUNCH (torchrun for this node) and BIG (1 on 141 GB GPUs, 0 on 80 GB).
#   bash runs/2_rm_13b.sh                                        # one node of 8 GPUs
#   NNODES=2 MASTER_ADDR=node0 bash runs/4_ppo_13b.sh            # the same line on every node (c10d rendezvous)
# Paths: NANOPREF_DATA (the JSONL files named in each script), CKPTS (input checkpoints), out/ (run directories).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
DATA=${NANOPREF_DATA:-/data/nanopref}
CKPTS=${CKPTS:-/ckpts}
if [ "$NNODES" -gt 1 ]; then  # every node runs this; the rendezvous numbers the nodes, so no --node_rank
    LAUNCH="torchrun --nnodes=$NNODES --nproc_per_node=$GPUS_PER_NODE --rdzv_backend=c10d --rdzv_id=${RUN_ID:-nanopref}
            --rdzv_endpoint=${MASTER_ADDR:?set MASTER_ADDR to node 0}:${MASTER_PORT:-29500}"
else
    LAUNCH="torchrun --standalone --nproc_per_node=$GPUS_PER_NODE"
fi
command -v nvidia-smi > /dev/null || { echo "runs/: needs NVIDIA GPUs (no nvidia-smi here)" >&2; exit 1; }
MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
BIG=$(( MIB > 100000 ? 1 : 0 ))
GPUS=$(( NNODES * GPUS_PER_NODE ))
need() {  # need N_80GB N_141GB: stop early when the memory plan says this stage does not fit on $GPUS GPUs
    local n=$([ "$BIG" = 1 ] && echo "$2" || echo "$1")
    if [ "$GPUS" -lt "$n" ]; then
        echo "memory plan (docs/scale.md): this stage needs $n GPUs of ${MIB} MiB; have $GPUS (set NNODES)" >&2
        exit 1
    fi
}
