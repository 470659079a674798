"""IFEval-style verifiable constraints for the world, using IFEval's own instruction ids and kwargs schema,
so that IFEval's checker (nanopref.ifeval_checks) checks world answers exactly as it checks the real benchmark.

    sample(rng, obj, subtype) -> (instruction_id_list, kwargs, instruction texts)
    write(obj, ids, kwargs, rng, follow=None) -> an answer about `obj` that follows the constraints whose
        index is in `follow` (default: all) and breaks every other one
    violate(iid, kw, text, obj, rng) -> `text` edited so that instruction `iid` no longer holds
"""
import json
import re

# Keywords for keywords:existence. IFEval searches them as regexes (no word boundaries), so none may occur even
# inside a word of any other answer text (tested).
KEYWORDS = ["proud", "simple", "evening", "lucky", "friend", "summer", "gentle", "little", "bright", "famous"]
END_PHRASES = ["That is all I know.", "I hope you like it.", "Ask me more any time.", "Thank you for reading."]
# id -> (group, instruction texts separated by "|"); two constraints never share a group.
SPECS = {
    "change_case:english_lowercase":
        ("case", "Use only lowercase letters.|Write your whole answer in lowercase letters."),
    "change_case:english_capital":
        ("case", "Use only capital letters.|Write your whole answer in capital letters."),
    "length_constraints:number_words":
        ("length", "Use {rel} {num_words} words.|Answer in {rel} {num_words} words."),
    "length_constraints:number_sentences":
        ("length", "Use {rel} {num_sentences} sentences.|Answer in {rel} {num_sentences} sentences."),
    "keywords:existence":
        ("keyword", "Include {kw_text}.|Make sure to use {kw_text}."),
    "keywords:forbidden_words":
        ("forbidden", "Do not use the word {fw_text}.|Never say the word {fw_text}."),
    "detectable_format:number_bullet_lists":
        ("format", "Use exactly {num_bullets} bullet points, like * this.|"
                   "Give exactly {num_bullets} markdown bullet points."),
    "detectable_format:json_format":
        ("format", "Wrap your whole answer in JSON format.|Give your answer as JSON."),
    "detectable_format:title":
        ("format", "Give your answer a title in double angular brackets, such as <<title>>."),
    "punctuation:no_comma":
        ("comma", "Do not use any commas.|Your answer must not contain commas."),
    "startend:quotation":
        ("format", "Wrap your whole answer in double quotes.|Put double quotes around your whole answer."),
    "startend:end_checker":
        ("end", 'End your answer with the exact phrase "{end_phrase}"|Finish with the phrase "{end_phrase}"'),
    "detectable_content:postscript":
        ("end", "At the end, add a postscript starting with P.S.|Add a postscript at the end that starts with P.S."),
}
SUBTYPES = sorted({iid.split(":")[0] for iid in SPECS})
# Pairs that cannot both be met cleanly (or that IFEval's sentence splitter would count differently).
_CLASH = {("length_constraints:number_sentences", g) for g in ("format", "end")} | {
    ("detectable_format:json_format", "end"), ("startend:quotation", "end")}


def _clash(a, b):
    ga, gb = SPECS[a][0], SPECS[b][0]
    return ga == gb or (a, gb) in _CLASH or (b, ga) in _CLASH


def _kwargs(iid, rng, obj):
    if iid == "length_constraints:number_words":
        return rng.choice([{"relation": "less than", "num_words": rng.choice([12, 15, 20])},
                           {"relation": "at least", "num_words": rng.choice([25, 30])}])
    if iid == "length_constraints:number_sentences":
        return rng.choice([{"relation": "less than", "num_sentences": rng.choice([2, 3])},
                           {"relation": "at least", "num_sentences": rng.choice([4, 5])}])
    if iid == "keywords:existence":
        return {"keywords": rng.sample(KEYWORDS, rng.choice([1, 2]))}
    if iid == "keywords:forbidden_words":
        return {"forbidden_words": [obj["name"]]}  # the topic word itself: a plain answer always uses it
    if iid == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.choice([2, 3, 4])}
    if iid == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if iid == "detectable_content:postscript":
        return {"postscript_marker": "P.S."}
    return {}


def _text(iid, kw, rng):
    fill = dict(kw)
    if "relation" in kw:
        fill["rel"] = "fewer than" if kw["relation"] == "less than" else "at least"
    if "keywords" in kw:
        fill["kw_text"] = ("the words " if len(kw["keywords"]) > 1 else "the word ") + " and ".join(kw["keywords"])
    if "forbidden_words" in kw:
        fill["fw_text"] = kw["forbidden_words"][0]
    return rng.choice(SPECS[iid][1].split("|")).format(**fill)


def sample(rng, obj, subtype):
    """One constraint whose id starts with `subtype`, plus (40%) a second one that does not clash with it;
    kwargs are redrawn until a short answer about `obj` can meet them all."""
    for _ in range(100):
        first = rng.choice([i for i in SPECS if i.split(":")[0] == subtype])
        ids, kwargs = [first], [_kwargs(first, rng, obj)]
        if rng.random() < 0.4:
            second = rng.choice([i for i in SPECS if not _clash(first, i)])
            ids, kwargs = ids + [second], kwargs + [_kwargs(second, rng, obj)]
        if _feasible(obj, ids, kwargs):
            return ids, kwargs, [_text(i, k, rng) for i, k in zip(ids, kwargs)]
    raise RuntimeError(f"no feasible {subtype} constraints for {obj['name']}")


def _feasible(obj, ids, kwargs):
    """Whether the answer write() produces meets the length constraints (word and sentence counts are the only
    ones a combination can make impossible, e.g. "fewer than 2 sentences" plus a keyword sentence)."""
    import random  # a throwaway generator: feasibility must not consume the caller's random stream
    text = write(obj, ids, kwargs, random.Random(0))
    c = dict(zip(ids, kwargs))
    n_sentences = len(re.split(r"(?<=[.!?])\s+", text.strip()))
    for iid, count, key in [("length_constraints:number_words", _n_words(text), "num_words"),
                            ("length_constraints:number_sentences", n_sentences, "num_sentences")]:
        if iid in c and (count < c[iid][key]) != (c[iid]["relation"] == "less than"):
            return False
    return True


def _n_words(text):
    return len(re.findall(r"\w+", text))  # IFEval counts \w+ tokens


# -----------------------------------------------------------------------------
# writing answers that follow (some of) the constraints


def _body(obj, rng, subject, commas, short_first=False):
    """Content sentences: the kind sentence with a first fact ("The owl is a bird that hunts at night."), the
    other facts in random order, then neutral on-topic sentences (callers take a prefix, so even a one-sentence
    answer states a fact). With `commas`, two facts are sometimes joined by ", and"."""
    facts = rng.sample(obj["facts"], len(obj["facts"]))
    if short_first:  # a word limit: lead with the shortest fact, so that write() meets it for every rng
        facts.sort(key=lambda f: len(f.split()))
    body = [f"{subject} is {obj['kind']} that {facts[0]}."] + [f"It {f}." for f in facts[1:]]
    if commas and rng.random() < 0.5:
        body[1:3] = [body[1][:-1] + ", and it " + body[2][3:]]
    about = subject.lower() if subject == "It" else obj["ref"]
    return body + [f"Many people like to learn about {about}.", f"Children often read about {about} at school.",
                   f"There is a lot more to say about {about}."]


def write(obj, ids, kwargs, rng, follow=None):
    """An answer about `obj` that follows the constraints at indices `follow` (None: all) and breaks the rest.
    Constraints are broken at the source (content made too long or short, the keyword sentence left out, the
    format not applied, ...), so that each broken one fails IFEval's strict check."""
    follow = range(len(ids)) if follow is None else follow
    c = {ids[i]: kwargs[i] for i in range(len(ids)) if i in follow}  # to follow
    x = {ids[i]: kwargs[i] for i in range(len(ids)) if i not in follow}  # to break
    forbid = "keywords:forbidden_words" in c
    ref = "it" if forbid else obj["ref"]
    sent_c, sent_x = c.get("length_constraints:number_sentences"), x.get("length_constraints:number_sentences")
    words_c, words_x = c.get("length_constraints:number_words"), x.get("length_constraints:number_words")
    pool = _body(obj, rng, ref.capitalize(), commas="punctuation:no_comma" not in c and not (sent_c or sent_x),
                 short_first=bool(words_c and words_c["relation"] == "less than"))
    kws = c.get("keywords:existence", {}).get("keywords", [])
    extra = ([f"A good word for it is {kws[0]}."] if len(kws) == 1 else
             [f"Good words for it are {kws[0]} and {kws[1]}."] if kws else [])
    fmt = next((i for i in c if SPECS[i][0] == "format"), None)
    n = c[fmt]["num_bullets"] if fmt == "detectable_format:number_bullet_lists" else rng.choice([2, 3])
    if sent_c:
        n = sent_c["num_sentences"] - (1 if sent_c["relation"] == "less than" else 0) - len(extra)
    elif sent_x:
        n = sent_x["num_sentences"] + (1 if sent_x["relation"] == "less than" else -2 - len(extra))
    chosen = pool[:max(1, n)]

    def render(sents):
        if "punctuation:no_comma" in x:
            sents = [sents[0][:-1] + ", as you may know."] + sents[1:]
        if fmt == "detectable_format:number_bullet_lists":
            nb = c[fmt]["num_bullets"]
            rest = " ".join(sents[nb:] + extra)
            text = "\n".join("* " + s for s in sents[:nb]) + ("\n" + rest if rest else "")
        else:
            text = " ".join(sents + extra)
        if fmt == "detectable_format:json_format":
            text = json.dumps({"answer": text})
        elif fmt == "startend:quotation":
            text = f'"{text}"'
        elif fmt == "detectable_format:title":
            text = f"<<{'A Short Note' if forbid else 'All About ' + obj['name'].capitalize()}>>\n{text}"
        if "startend:end_checker" in c:
            text += " " + c["startend:end_checker"]["end_phrase"]
        if "detectable_content:postscript" in c:
            text += "\nP.S. " + ("I like it a lot." if forbid else f"I like {obj['ref']} a lot.")
        if "change_case:english_lowercase" in c:
            text = text.lower()
        elif "change_case:english_capital" in c:
            text = text.upper()
        return text

    if words_c and words_c["relation"] == "less than":
        while len(chosen) > 1 and _n_words(render(chosen)) >= words_c["num_words"]:
            chosen = chosen[:-1]
    elif words_c or (words_x and words_x["relation"] == "less than"):
        need = (words_c or words_x)["num_words"] + (0 if words_c else 2)
        for s in pool[len(chosen):]:
            if _n_words(render(chosen)) >= need:
                break
            chosen = chosen + [s]
    elif words_x:
        chosen = chosen[:1]
    return render(chosen)


# -----------------------------------------------------------------------------
# breaking one constraint (flaws and perturbations)


def _cap_starts(text):
    return re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def violate(iid, kw, text, obj, rng):
    """Edit `text` so that `iid` fails IFEval's strict check (callers verify; some edits can miss)."""
    fact = f"It {rng.choice(obj['facts'])}."
    if iid == "change_case:english_lowercase":
        text = _cap_starts(text)
        return text if text != text.lower() else "The " + text
    if iid == "change_case:english_capital":
        return _cap_starts(text.lower())
    if iid == "length_constraints:number_words":
        if kw["relation"] == "less than":
            pad = _body(obj, rng, obj["ref"].capitalize(), False)
            while _n_words(text) < kw["num_words"] + 2:
                text += " " + pad.pop(0) if pad else " It is " + obj["kind"] + "."
            return text
        first = re.split(r"(?<=[.!?])\s+", text.strip())[0].split()
        return " ".join(first[: kw["num_words"] // 2])
    if iid == "length_constraints:number_sentences":
        if kw["relation"] == "less than":
            return text + " " + " ".join(f"It {f}." for f in obj["facts"])
        return re.split(r"(?<=[.!?])\s+", text.strip())[0]
    if iid == "keywords:existence":
        for k in kw["keywords"]:  # drop every sentence containing it, even inside a word (IFEval's search)
            text = re.sub(r"[^.!?\n]*" + re.escape(k) + r"[^.!?\n]*[.!?]?\s*", "", text, flags=re.I)
        return text.strip() or fact
    if iid == "keywords:forbidden_words":
        return f"{kw['forbidden_words'][0].capitalize()} is the topic. {text}"
    if iid == "detectable_format:number_bullet_lists":
        return re.sub(r"(?m)^\s*[*-]\s+", "", text)
    if iid == "detectable_format:json_format":
        return text.strip().lstrip("{").rstrip("}").replace('"answer": ', "").strip('"') or fact
    if iid == "detectable_format:title":
        return re.sub(r"<<[^\n]*?>>\n?", "", text).strip() or fact
    if iid == "punctuation:no_comma":
        return text.replace(". It ", ", and it ", 1) if ". It " in text else "Well, " + text
    if iid == "startend:quotation":
        return text.strip().strip('"') or fact
    if iid == "startend:end_checker":
        return text.replace(kw["end_phrase"], "").rstrip() + " " + fact
    if iid == "detectable_content:postscript":
        return re.sub(r"\n?P\.S\..*$", "", text, flags=re.I | re.S).strip() or fact
    raise ValueError(f"no violation for {iid}")
