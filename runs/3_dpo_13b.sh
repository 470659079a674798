#!/usr/bin/env bash
# DPO from the Tulu 2 13B SFT on UltraFeedback mean-of-aspects (EasyLM llama_train_dpo.py): beta 0.1, lr 5e-7,
# warmup 10% then linear decay, batch 32 pairs, 3 epochs, 4096 tokens, AdamW b2 0.95.
# Data: $NANOPREF_DATA/ultrafeedback_mean_aspects.jsonl; held out: .../ultrafeedback/test_prefs.sample500.jsonl.
# Memory plan (reference kept live, the worst case; --precompute_ref=true frees it after one pass):
#   8x80 GB: checkpointing, micro-batch 4 pairs, 67 of 69 GiB; 8x141 GB: none, micro 1, 106 of 124 GiB.
# Time: ~2.9 h (8xH100) / ~2.3 h (8xH200) counting a reference forward per step, at an assumed 35% MFU (not measured).
source "$(dirname "$0")/launch.sh"
need 8 8
SFT=${SFT:-$CKPTS/tulu-2-13b}
if [ "$BIG" = 1 ]; then OPTS="--grad_ckpt=false --micro_batch=1"; else OPTS="--grad_ckpt=true --micro_batch=4"; fi
$LAUNCH train_dpo.py --recipe=paper --data="$DATA/ultrafeedback_mean_aspects.jsonl" --init="$SFT" \
    --eval_pairs="$DATA/ultrafeedback/test_prefs.sample500.jsonl" --out_dir=out/dpo-13b --dtype=bfloat16 $OPTS \
    --max_len=4096 --batch_size=32 --epochs=3 --lr=5e-7 --warmup=0.1 --beta=0.1 --adam_beta2=0.95 "$@"
