"""perturb(example, response, kb, rng) -> a worse variant of `response`, for building preference pairs.

Edits are blind (change a number, drop a constraint, swap an entity, flip refuse/comply, add repetition or
off-topic padding, cut the end), tried in random order; the first one that lowers the oracle's overall
rating is returned. The check rejects edits that change nothing the oracle can see (e.g. a number it does not
read). If no edit lowers the rating, because the response is already at its category's floor (an accepted
premise, a harmful answer), the last candidate is returned: callers that need a strictly worse response should
compare overall(rate(...)). Measured: 100% strictly worse for good responses, 54-100% for SFT demos.
"""
import re

from . import constraints
from .kb import find
from .oracle import overall, rate
from .text import sentences
from .writers import FILLERS, flawed_response


def _repeat(text, rng):
    s = sentences(text)
    return text + " " + " ".join([rng.choice(s)] * 2) if s else "the the the the the the the the"


def _truncate(text, rng):
    cut = text.rfind(" ", 0, max(1, len(text) - 4))
    return text[:cut].rstrip(".,!?") if cut > 0 else ""


def _pad(text, rng):
    return " ".join(rng.sample(FILLERS, 2)) + " " + text + " " + rng.choice(FILLERS)


def _off_topic(ex, text, kb, rng):
    topic = ex["meta"].get("topic")
    other = rng.choice([o for o in kb["objects"] if o["name"] != topic])
    return text + f" {other['ref'].capitalize()} {rng.choice(other['facts'])}."


def _math_ops(ex, text, rng):
    nums = list(re.finditer(r"-?\d{1,9}", text))
    if not nums:
        return []
    last = nums[-1]
    d = rng.choice([-2, -1, 1, 2, 3])
    change_last = text[:last.start()] + str(int(last.group()) + d) + text[last.end():]
    eqs = list(re.finditer(r"=\s*(\d{1,9})", text))
    ops = [change_last, f"The answer is {last.group()}."]
    if eqs:
        e = rng.choice(eqs)
        wrong = str(int(e.group(1)) + d)
        ops.append(text[:e.start(1)] + wrong + text[e.end(1):].replace(f"answer is {e.group(1)}", f"answer is {wrong}"))
    return ops


def _truth_ops(ex, text, kb, rng):
    m = ex["meta"]
    ops = []
    cities = [c["capital"] for c in kb["countries"]]
    for pool in (cities, kb["jobs"], kb["colours"], kb["foods"]):
        present = [v for v in pool if re.search(r"\b" + re.escape(v) + r"\b", text)]
        if present:
            v = rng.choice(present)
            ops.append(re.sub(r"\b" + re.escape(v) + r"\b", rng.choice([w for w in pool if w != v]), text))
    undo = [(r"\bdoes not live\b", "lives"), (r"\bdoes not eat\b", "eats"), (r"\bis not\b", "is")]
    neg = text
    for pat, rep in undo:
        neg = re.sub(pat, rep, neg)
    ops.append(neg)
    flaw = "hallucinate" if not m["known"] else "accept" if m["premise"] else "swap"
    ops.append(flawed_response(ex, kb, rng, flaw))
    if m["known"]:
        ops.append(flawed_response(ex, kb, rng, "decline") if not m["premise"] else "I do not know.")
    return ops


def _ifeval_ops(ex, text, kb, rng):
    m = ex["meta"]
    obj = find(kb, "objects", m["topic"])
    return [constraints.violate(i, k, text, obj, rng) for i, k in zip(m["instruction_id_list"], m["kwargs"])]


def _safety_ops(ex, text, kb, rng):
    if ex["meta"]["should_refuse"]:
        return [flawed_response(ex, kb, rng, "comply"), flawed_response(ex, kb, rng, "partial"),
                text + " " + flawed_response(ex, kb, rng, "comply")]
    return [flawed_response(ex, kb, rng, "over_refuse"), "I'm sorry, but " + text[:1].lower() + text[1:]]


def _chat_ops(ex, text, kb, rng):
    s = sentences(text)
    return [" ".join(s[:2]), _pad(text, rng), _off_topic(ex, text, kb, rng), flawed_response(ex, kb, rng, "off_topic")]


def perturb(ex, response, kb, rng):
    """A variant of `response` that the oracle rates lower overall (see the module docstring)."""
    cat = ex["category"]
    ops = {"math": lambda: _math_ops(ex, response, rng), "truth": lambda: _truth_ops(ex, response, kb, rng),
           "ifeval": lambda: _ifeval_ops(ex, response, kb, rng), "safety": lambda: _safety_ops(ex, response, kb, rng),
           "chat": lambda: _chat_ops(ex, response, kb, rng)}[cat]()
    ops += [_repeat(response, rng), _truncate(response, rng)]
    if cat in ("chat", "ifeval"):
        ops.append(_off_topic(ex, response, kb, rng))
    rng.shuffle(ops)
    base = overall(rate(ex, response, kb))
    for cand in ops:
        if cand != response and overall(rate(ex, cand, kb)) < base:
            return cand
    return ops[-1]
