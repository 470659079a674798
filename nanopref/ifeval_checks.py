"""The 25 IFEval instruction checkers as plain functions: CHECKERS[instruction_id](response, **kwargs) -> bool,
and check(), IFEval's strict and loose verdicts. Shared by the real benchmark (nanopref.evals.ifeval) and the world's
scorers (nanopref.world.scorers), so it imports nothing from either.

Semantics follow google-research instruction_following_eval/instructions.py (the copy open-instruct ships),
including its quirks: keywords are used as regular expressions, `less than` is strict and `at least` is >=,
`number_paragraphs` splits on "***" and fails on an empty paragraph in the middle, `multiple_sections` counts
"SECTION 1"-style splits with >= (not ==), a language that cannot be detected counts as followed.

The official code depends on nltk (punkt, Treebank) and langdetect; nanopref does not. What is the same, then
every remaining deviation:
  * count_sentences (official: punkt's English model). Same: a boundary needs . ! ? then whitespace or the end
    (so "3.14", "e.g.x" never split); ! and ? always end a sentence, newlines never do ("- a\\n- b" is one); a
    '.' after any other word ends one even before a lowercase word; a number or single letter before a lowercase
    word or , ; : does not ("1. apples", "option a. then") but does before a capital ("1. Apples\\n2. Pears" =
    "1." + "Apples\\n2." + "Pears", three, as punkt counts numbered lists). Deviations (punkt's trained
    statistics): (a) abbreviations are a fixed list here (Mr Dr e.g. i.e. etc. U.S. a.m. ..., and any dotted
    one) and never end a sentence, while punkt's learned list differs and it does break after an abbreviation
    before a frequent sentence starter ("... etc. The"); (b) a capital initial before a capital word never
    breaks here ("J. Smith", also "Plan B. The end." = 1); (c) an ellipsis breaks before every capital here,
    in punkt only before a likely sentence start; (d) punkt's collocations and its break before ( [ { ; : @ *
    with no space ("end.(next") are not modelled.
  * count_words: official = nltk RegexpTokenizer(r"\\w+"), i.e. re.findall(r"\\w+"): identical.
  * capital_word_frequency: official = nltk.word_tokenize (Treebank). Here: words (hyphenated words and
    dotted abbreviations stay one token), clitics n't 's 're 've 'll 'd 'm split off, punctuation separate;
    a token counts if str.isupper(). Same counts on ordinary text.
  * response_language / english_capital / english_lowercase (official: langdetect): see ifeval_lang.py, which
    lists what is the same and every deviation (short answers with no cue are English here, not in langdetect).
  * letter_frequency with a non-letter (two prompts ask for '#' and '!'): the official code checks a *random*
    ASCII letter instead; here the given character is counted.
Checked against lm-eval-harness's copy of the official checkers (langdetect seeded, nltk's Treebank tokenizer)
on the 541 prompts x 23 synthetic response variants: identical results for every checker except
number_sentences (not compared: needs nltk's punkt data) and the degenerate cases just listed. The sentence
rules were checked with nltk 3.10's PunktSentenceTokenizer given only a few abbreviations (the English model is
not available offline) on the degenerate cases of tests/test_eval_ifeval.py: the same splits except (a)-(d).
"""
import collections
import json
import re

from nanopref.ifeval_lang import detect_language

# -----------------------------------------------------------------------------
# text utilities

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "capt",
           "lt", "col", "gen", "no", "fig", "al", "approx", "dept", "est", "u.s", "u.k", "a.m", "p.m", "ph.d"}


def count_words(text):
    return len(re.findall(r"\w+", text))


def split_sentences(text):
    """Sentences as nltk's punkt (English model) cuts them, by its rules that need no trained statistics: a run of
    . ! ? followed by optional closing quotes or brackets and whitespace or the end is a boundary, except a '.' that
    `_period_continues` says punkt would not break at. '!' and '?' always end a sentence; newlines never do."""
    sentences, start = [], 0
    for m in re.finditer(r"[.!?]+(?=[\"')\]]*(\s|$))", text):
        end = m.end() + len(re.match(r"[\"')\]]*", text[m.end():]).group())
        if set(m.group()) == {"."} and _period_continues(text[start:m.start()], m.group(), text[end:]):
            continue
        if text[start:end].strip():
            sentences.append(text[start:end].strip())
        start = end
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def _period_continues(before, dots, after):
    """punkt's decisions at a '.'-run: an ellipsis ends a sentence only before a capital; a known or dotted
    abbreviation (Dr. e.g. U.S.) never does; a number or a single letter does not before a lowercase word or , ; :
    (punkt's orthographic heuristic: "1. apples", "option a. then"), nor a capital initial before a capital ("J.
    Smith"); any other word does ("it. and" is two sentences for punkt too)."""
    word = re.search(r"[^\s(\"'`{\[]*$", before).group()
    nxt = after.lstrip()[:1]
    if len(dots) > 1:
        return not nxt.isupper()
    if word.lower() in _ABBREV or re.fullmatch(r"(\w\.)+\w", word):
        return True
    if re.fullmatch(r"-?[.,]?\d[\d,.-]*|[^\W\d_]", word):
        return nxt.islower() or nxt in (",", ";", ":") or (word.isupper() and nxt.isupper())
    return False


def count_sentences(text):
    return len(split_sentences(text))


def word_tokens(text):
    """Approximation of nltk.word_tokenize: see the module docstring."""
    tokens = []
    for tok in re.findall(r"[A-Za-z](?:\.[A-Za-z])+\.?|\w+(?:[-'’]\w+)*|[^\w\s]", text):
        m = re.fullmatch(r"(.+?)(n't|'s|'re|'ve|'ll|'d|'m)", tok, flags=re.IGNORECASE)
        tokens += [m.group(1), m.group(2)] if m else [tok]
    return tokens


def _compare(n, relation, threshold):
    if relation not in ("less than", "at least"):
        raise ValueError(f"relation must be 'less than' or 'at least', got {relation!r}")
    return n < threshold if relation == "less than" else n >= threshold


# -----------------------------------------------------------------------------
# the 25 checkers


def keywords_existence(r, keywords):
    return all(re.search(k, r, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(r, keyword, frequency, relation):
    return _compare(len(re.findall(keyword.strip(), r, flags=re.IGNORECASE)), relation, frequency)


def keywords_forbidden_words(r, forbidden_words):
    return not any(re.search(r"\b" + w + r"\b", r, flags=re.IGNORECASE) for w in forbidden_words)


def keywords_letter_frequency(r, letter, let_frequency, let_relation):
    return _compare(collections.Counter(r.lower())[letter.strip().lower()], let_relation, let_frequency)


def language_response_language(r, language):
    detected = detect_language(r)
    return detected is None or detected == language


def number_sentences(r, num_sentences, relation):
    return _compare(count_sentences(r), relation, num_sentences)


def number_paragraphs(r, num_paragraphs):
    paragraphs = re.split(r"\s?\*\*\*\s?", r)
    n = len(paragraphs)
    for i, p in enumerate(paragraphs):
        if not p.strip():
            if i in (0, len(paragraphs) - 1):
                n -= 1
            else:
                return False
    return n == num_paragraphs


def number_words(r, num_words, relation):
    return _compare(count_words(r), relation, num_words)


def nth_paragraph_first_word(r, num_paragraphs, nth_paragraph, first_word):
    paragraphs = re.split(r"\n\n", r)
    n = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > n or not paragraphs[nth_paragraph - 1].strip():
        return False  # (the official code indexes the raw split, empty paragraphs included)
    word = paragraphs[nth_paragraph - 1].strip().split()[0].strip().lstrip("'").lstrip('"')
    first = re.match(r"[^.,?!'\"]*", word).group().lower()
    return n == num_paragraphs and first == first_word.lower()


def number_placeholders(r, num_placeholders):
    return len(re.findall(r"\[.*?\]", r)) >= num_placeholders


def postscript(r, postscript_marker):
    marker = postscript_marker.strip()
    patterns = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}
    pattern = patterns.get(marker, r"\s*" + marker.lower() + r".*$")
    return bool(re.findall(pattern, r.lower(), flags=re.MULTILINE))


def number_bullet_lists(r, num_bullets):
    stars = re.findall(r"^\s*\*[^\*].*$", r, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", r, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def constrained_response(r):
    return any(o in r.strip() for o in ("My answer is yes.", "My answer is no.", "My answer is maybe."))


def number_highlighted_sections(r, num_highlights):
    single = [h for h in re.findall(r"\*[^\n\*]*\*", r) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", r) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double) >= num_highlights


def multiple_sections(r, section_spliter, num_sections):
    return len(re.split(r"\s?" + section_spliter.strip() + r"\s?\d+\s?", r)) - 1 >= num_sections


def json_format(r):
    v = r.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        v = v.removeprefix(prefix)
    try:
        json.loads(v.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def title(r):
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", r))


def two_responses(r):
    valid = []
    parts = r.split("******")
    for i, p in enumerate(parts):
        if not p.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(p)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def repeat_prompt(r, prompt_to_repeat):
    return r.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(r, end_phrase):
    return r.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def capital_word_frequency(r, capital_frequency, capital_relation):
    return _compare(sum(t.isupper() for t in word_tokens(r)), capital_relation, capital_frequency)


def english_capital(r):
    lang = detect_language(r)
    return r.isupper() and (lang is None or lang == "en")


def english_lowercase(r):
    lang = detect_language(r)
    return r.islower() and (lang is None or lang == "en")


def no_comma(r):
    return not re.search(r"\,", r)


def quotation(r):
    v = r.strip()
    return len(v) > 1 and v[0] == '"' and v[-1] == '"'


CHECKERS = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keywords_frequency,
    "keywords:forbidden_words": keywords_forbidden_words,
    "keywords:letter_frequency": keywords_letter_frequency,
    "language:response_language": language_response_language,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_words": number_words,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": json_format,
    "detectable_format:title": title,
    "combination:two_responses": two_responses,
    "combination:repeat_prompt": repeat_prompt,
    "startend:end_checker": end_checker,
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "punctuation:no_comma": no_comma,
    "startend:quotation": quotation,
}


# -----------------------------------------------------------------------------
# strict and loose verdicts (the official evaluation_main.py)


def loose_variants(response):
    """The official eight response variants of the loose setting (the response itself first)."""
    lines = response.split("\n")
    first, last, both = "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()
    variants = [response, first, last, both]
    return variants + [v.replace("*", "") for v in variants]


def _follows(instruction_id, kwargs, response):
    args = {k: v for k, v in (kwargs or {}).items() if v is not None}
    return bool(response.strip()) and bool(CHECKERS[instruction_id](response, **args))


def check(response, instruction_id_list, kwargs, prompt=None):
    """{"strict": [bool per instruction], "loose": [bool per instruction], "strict_all": bool, "loose_all": bool}.

    `prompt` is accepted for the official signature; no checker of the 25 reads it."""
    variants = loose_variants(response)
    strict = [_follows(i, kw, response) for i, kw in zip(instruction_id_list, kwargs)]
    loose = [any(_follows(i, kw, v) for v in variants) for i, kw in zip(instruction_id_list, kwargs)]
    return {"strict": strict, "loose": loose, "strict_all": all(strict), "loose_all": all(loose)}
