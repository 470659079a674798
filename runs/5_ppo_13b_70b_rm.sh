#!/usr/bin/env bash
# PPO as in 4_ppo_13b.sh with a 70B UltraFeedback RM (and a 70B value model from it), KL 0.0325 as the paper used
# with its larger RMs. The 70B RM comes from 2_rm_13b.sh run with SFT=a 70B Tulu 2 checkpoint (allenai/tulu-2-70b).
# Data: $NANOPREF_DATA/ultrafeedback_prompts.jsonl.
# Memory plan: the trained 70B value model alone is 16 x 69B / W bytes per GPU: 16x141 GB (2 nodes) with
#   checkpointing, reference and reward offloaded, micro-batch 1, gen batch 4, 122 of 124 GiB; on 80 GB GPUs, 64.
# Time: ~8.8 h (16xH200) / ~2.3 h (64xH100), assuming 35% MFU and decoding at 70% of bandwidth (not measured).
source "$(dirname "$0")/launch.sh"
need 64 16
SFT=${SFT:-$CKPTS/tulu-2-13b}
RM=${RM:-out/rm-70b}
if [ "$BIG" = 1 ]; then OPTS="--offload_frozen=true --gen_batch=4"; else OPTS="--offload_frozen=false --gen_batch=4"; fi
$LAUNCH train_ppo.py --recipe=paper --prompts="$DATA/ultrafeedback_prompts.jsonl" --policy="$SFT" --reward="$RM" \
    --out_dir=out/ppo-13b-70b-rm --dtype=bfloat16 --grad_ckpt=true $OPTS --micro_batch=1 --compile=true \
    --max_prompt_len=1024 --max_new_tokens=1024 --batch_size=512 --minibatch=64 --epochs=1 --lr=1e-6 \
    --kl_coef=0.0325 --temperature=0.7 --missing_eos_score=-10 "$@"
