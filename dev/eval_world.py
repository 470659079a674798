"""Evaluate a checkpoint on a world directory's ground truth and write eval_world.json + eval_world_samples.jsonl,
so runs trained at different times can be scored against one frozen copy of the world (dev/compare_world.py).

    python dev/eval_world.py CHECKPOINT OUT_DIR [WORLD_DIR]        # WORLD_DIR default: out/world/seed0 (built)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanopref.common import write_json, write_jsonl  # noqa: E402
from nanopref.evals import world as world_eval  # noqa: E402
from nanopref.evals.lm import NanoprefLM  # noqa: E402
from nanopref.world.build import build_world, load_world  # noqa: E402

ckpt, out = sys.argv[1], sys.argv[2]
world = load_world(sys.argv[3] if len(sys.argv) > 3 else build_world(0))
metrics, records = world_eval.run(NanoprefLM.load(ckpt, batch_size=128), world)
print(world_eval.format_table(metrics, os.path.basename(out.rstrip("/"))))
os.makedirs(out, exist_ok=True)
write_json(os.path.join(out, "eval_world.json"), metrics)
write_jsonl(os.path.join(out, "eval_world_samples.jsonl"), records)
