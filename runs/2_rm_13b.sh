#!/usr/bin/env bash
# 13B reward model on UltraFeedback mean-of-aspects pairs (EasyLM llama_train_rm.py): from the Tulu 2 13B SFT,
# lr 1e-5 -> 1e-6 linear, warmup 3%, batch 512 pairs, 1 epoch, 4096 tokens.
# Data: $NANOPREF_DATA/ultrafeedback_mean_aspects.jsonl (allenai/tulu-2.5-preference-data, ~61k pairs);
#       held out: $NANOPREF_DATA/ultrafeedback/test_prefs.sample500.jsonl.
# Memory plan: 8x80 GB: checkpointing, micro-batch 4 pairs, 55 of 69 GiB; 8x141 GB: none, micro 1, 101 of 124 GiB.
# Time: ~0.8 h (8xH100) / ~0.6 h (8xH200) at the assumed 35% MFU (not measured).
source "$(dirname "$0")/launch.sh"
need 8 8
SFT=${SFT:-$CKPTS/tulu-2-13b}
if [ "$BIG" = 1 ]; then OPTS="--grad_ckpt=false --micro_batch=1"; else OPTS="--grad_ckpt=true --micro_batch=4"; fi
$LAUNCH train_rm.py --recipe=paper --data="$DATA/ultrafeedback_mean_aspects.jsonl" --sft="$SFT" \
    --eval_data="$DATA/ultrafeedback/test_prefs.sample500.jsonl" --out_dir=out/rm-13b --dtype=bfloat16 $OPTS \
    --max_len=4096 --batch_size=512 --epochs=1 --lr=1e-5 --end_lr_ratio=0.1 --warmup=0.03 "$@"
