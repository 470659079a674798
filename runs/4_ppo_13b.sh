#!/usr/bin/env bash
# PPO from the Tulu 2 13B SFT with the 13B UltraFeedback RM (EasyLM llama_train_ppo.py): value model from the RM,
# KL 0.05, 512 rollouts per step, minibatch 64, 1 PPO epoch, 1024 + 1024 tokens, lr 1e-6, temperature 0.7, -10 for
# a response without EOS, ~116 steps for one pass over the prompts.
# Data: $NANOPREF_DATA/ultrafeedback_prompts.jsonl (allenai/tulu-2.5-prompts, split ultrafeedback_prompts, ~60k).
# Memory plan: 8x80 GB does not fit (two trained 13B models + a bf16 sampling copy): 16x80 GB (2 nodes) with
#   checkpointing, reference and reward offloaded, micro-batch 1, gen batch 8, 68 of 69 GiB; 8x141 GB: checkpointing,
#   micro-batch 4, gen batch 16, 123 of 124 GiB.
# Time: ~3.9 h (16xH100) / ~5.4 h (8xH200), assuming 35% MFU and decoding at 70% of bandwidth (not measured).
source "$(dirname "$0")/launch.sh"
need 16 8
SFT=${SFT:-$CKPTS/tulu-2-13b}
RM=${RM:-out/rm-13b}
if [ "$BIG" = 1 ]; then OPTS="--offload_frozen=false --micro_batch=4 --gen_batch=16"
else OPTS="--offload_frozen=true --micro_batch=1 --gen_batch=8"; fi
$LAUNCH train_ppo.py --recipe=paper --prompts="$DATA/ultrafeedback_prompts.jsonl" --policy="$SFT" --reward="$RM" \
    --out_dir=out/ppo-13b --dtype=bfloat16 --grad_ckpt=true $OPTS --compile=true \
    --max_prompt_len=1024 --max_new_tokens=1024 --batch_size=512 --minibatch=64 --epochs=1 --lr=1e-6 \
    --kl_coef=0.05 --temperature=0.7 --missing_eos_score=-10 "$@"
