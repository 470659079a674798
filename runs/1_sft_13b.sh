#!/usr/bin/env bash
# Tulu 2 13B SFT: Llama-2-13B on tulu-v2-sft-mixture, lr 2e-5, batch 128, 2 epochs, 4096 tokens (Tulu 2 used 8192;
# Llama-2's rotary table is 4096). The paper starts from the released result, allenai/tulu-2-13b: skip this script
# and point the next ones at it, or run it to reproduce it.
# Data: $NANOPREF_DATA/tulu-v2-sft-mixture.jsonl ({"messages": [...]} rows of allenai/tulu-v2-sft-mixture, 326k).
# Memory plan: 8x80 GB: no checkpointing, micro-batch 1, 65.5 of 69 GiB; 8x141 GB: micro-batch 2, 103 of 124 GiB.
# Time: ~8.2 h per billion tokens on 8 GPUs at the assumed 35% MFU (not measured).
source "$(dirname "$0")/launch.sh"
need 8 8
$LAUNCH train_sft.py --recipe=paper --data="$DATA/tulu-v2-sft-mixture.jsonl" --init="$CKPTS/llama-2-13b-hf" \
    --out_dir=out/sft-13b --dtype=bfloat16 --grad_ckpt=false --micro_batch=$([ "$BIG" = 1 ] && echo 2 || echo 1) \
    --max_len=4096 --batch_size=128 --epochs=2 --lr=2e-5 --warmup=0.03 "$@"
