"""The 25 IFEval instruction checkers as plain functions: CHECKERS[instruction_id](response, **kwargs) -> bool,
and check(), IFEval's strict and loose verdicts. Shared by the real benchmark (nanopref.evals.ifeval) and the world's
scorers (nanopref.world.scorers), so it imports nothing from either.

Semantics follow google-research instruction_following_eval/instructions.py (the copy open-instruct ships),
including its quirks: keywords are used as regular expressions, `less than` is strict and `at least` is >=,
`number_paragraphs` splits on "***" and fails on an empty paragraph in the middle, `multiple_sections` counts
"SECTION 1"-style splits with >= (not ==), a language that cannot be detected counts as followed.

Deviations (the official code depends on nltk and langdetect; nanopref does not):
  * count_sentences: official = nltk punkt (English pickle). Here: a rule-based splitter at . ! ? (runs of
    them) followed by whitespace or the end, not after common abbreviations (Mr. Dr. e.g. etc. U.S. ...), single
    initials or inside numbers. Agrees with punkt on ordinary prose; may differ on unusual abbreviations.
  * count_words: official = nltk RegexpTokenizer(r"\\w+"), i.e. re.findall(r"\\w+"): identical.
  * capital_word_frequency: official = nltk.word_tokenize (Treebank). Here: words (hyphenated words and
    dotted abbreviations stay one token), clitics n't 's 're 've 'll 'd 'm split off, punctuation separate;
    a token counts if str.isupper(). Same counts on ordinary text.
  * response_language / english_capital / english_lowercase: official = langdetect. Here `detect_language`:
    the dominant Unicode script decides for languages with their own script (Korean, Japanese, Chinese, Thai,
    Hebrew, Greek, Bengali, Gurmukhi, Gujarati, Tamil, Telugu, Kannada, Malayalam); within Arabic script, Urdu-
    then Persian-specific letters decide ur / fa / ar; within Devanagari and Cyrillic, letter and stop-word
    cues decide hi / mr / ne and ru / uk / bg; Latin-script text is scored by stop words and diacritics over
    en de fr es pt it nl fi sw vi pl tr id; ties and texts with no cue at all go to en (langdetect's answer
    for such degenerate texts, e.g. "WORD WORD", is arbitrary). No letters at all = undetectable (followed).
  * letter_frequency with a non-letter (two prompts ask for '#' and '!'): the official code checks a *random*
    ASCII letter instead; here the given character is counted.
Checked against lm-eval-harness's copy of the official checkers (langdetect seeded, nltk's Treebank tokenizer)
on the 541 prompts x 23 synthetic response variants: identical results for every checker except
number_sentences (not compared: needs nltk's punkt data) and the degenerate cases just listed.
"""
import collections
import json
import re

# -----------------------------------------------------------------------------
# text utilities

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "capt",
           "lt", "col", "gen", "no", "fig", "al", "approx", "dept", "est", "u.s", "u.k", "a.m", "p.m", "ph.d"}


def count_words(text):
    return len(re.findall(r"\w+", text))


def split_sentences(text):
    sentences, start = [], 0
    for m in re.finditer(r"[.!?]+(?=[\"')\]]*(\s|$))", text):
        word = re.search(r"([\w.]+)$", text[start:m.start()])
        word = word.group(1) if word else ""
        abbreviation = word.lower() in _ABBREV or re.fullmatch(r"[A-Z]|(\w\.)+\w", word)
        if m.group() == "." and abbreviation:
            continue  # "Dr. Smith", "J. Doe", "U.S. law": not a boundary
        end = m.end() + len(re.match(r"[\"')\]]*", text[m.end():]).group())
        if text[start:end].strip():
            sentences.append(text[start:end].strip())
        start = end
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def count_sentences(text):
    return len(split_sentences(text))


def word_tokens(text):
    """Approximation of nltk.word_tokenize: see the module docstring."""
    tokens = []
    for tok in re.findall(r"[A-Za-z](?:\.[A-Za-z])+\.?|\w+(?:[-'’]\w+)*|[^\w\s]", text):
        m = re.fullmatch(r"(.+?)(n't|'s|'re|'ve|'ll|'d|'m)", tok, flags=re.IGNORECASE)
        tokens += [m.group(1), m.group(2)] if m else [tok]
    return tokens


_STOPWORDS = {
    "en": "the a and is are was of to in that it for you with on this be have not as at by from they we or but",
    "de": "der die das und ist nicht ich sie es ein eine zu mit den auf für sich dem auch wir",
    "fr": "le la les et est un une des du pas que qui dans pour sur avec au ce je vous nous",
    "es": "el la los las y es un una de que en no por con para se del lo como más pero",
    "pt": "o a os as e é um uma de que em não por com para se do da no na mais você",
    "it": "il la le e è un una di che in non per con sono si del della gli lo più anche",
    "nl": "de het een en is van dat niet ik je op te met zijn voor er aan ook",
    "fi": "ja on ei se että hän mutta kun niin tai ovat olla myös tämä joka kuin mitä",
    "sw": "na ya wa kwa ni katika za la hii kuwa au lakini pia watu sana hiyo yake",
    "vi": "và là của có không những các một được cho người này với trong đã khi",
    "pl": "i w nie na się jest to że z do jak ale co tak od po są",
    "tr": "ve bir bu da de için ile çok ne mi var daha gibi olarak ama",
    "id": "dan yang di ini itu dengan untuk tidak dari dalam akan ada juga saya",
}
_STOPWORDS = {k: set(v.split()) for k, v in _STOPWORDS.items()}
_DIACRITICS = {"de": "äöüß", "fr": "éèêëàâçîôùû", "es": "ñ¿¡áéíóú", "pt": "ãõçáâêéíóú", "it": "àèéìòù",
               "fi": "äö", "vi": "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ", "pl": "ąęłśżźćń",
               "tr": "ığşç"}
_SCRIPTS = [("ko", "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"), ("ja", "\u3040-\u30ff"), ("zh-cn", "\u4e00-\u9fff"),
            ("th", "\u0e00-\u0e7f"), ("he", "\u0590-\u05ff"), ("el", "\u0370-\u03ff"), ("bn", "\u0980-\u09ff"),
            ("pa", "\u0a00-\u0a7f"), ("gu", "\u0a80-\u0aff"), ("ta", "\u0b80-\u0bff"), ("te", "\u0c00-\u0c7f"),
            ("kn", "\u0c80-\u0cff"), ("ml", "\u0d00-\u0d7f"), ("arabic", "\u0600-\u06ff\u0750-\u077f"),
            ("devanagari", "\u0900-\u097f"), ("cyrillic", "\u0400-\u04ff"),
            ("latin", "A-Za-z\u00c0-\u024f\u1e00-\u1eff")]


def _best(text, cues, default):
    scores = {k: sum(text.count(c) for c in v) for k, v in cues.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] > 0 else default


def detect_language(text):
    """ISO 639-1 code of the text's language (heuristic; see module docstring), or None with no letters."""
    counts = {code: len(re.findall(f"[{chars}]", text)) for code, chars in _SCRIPTS}
    if counts["ja"] and counts["zh-cn"]:
        counts["ja"] += counts.pop("zh-cn")  # kanji plus kana is Japanese
    script = max(counts, key=counts.get)
    if counts[script] == 0:
        return None
    low = text.lower()
    words = re.findall(r"\w+", low)
    if script == "arabic":
        if re.search("[\u06d2\u06ba\u0679\u0688\u0691]", text):  # ے ں ٹ ڈ ڑ
            return "ur"
        return "fa" if re.search("[\u067e\u0686\u0698\u06af\u06cc\u06a9]", text) else "ar"  # پ چ ژ گ ی ک
    if script == "devanagari":
        cues = {"hi": ["है", "और", "में", "के ", "से ", "हैं"], "mr": ["आहे", "आणि", "आहेत", "च्या", "ला "],
                "ne": ["छ", "हरू", "मा ", "गर्न", "छन्"]}
        return _best(low + " ", cues, "hi")
    if script == "cyrillic":
        if re.search("[іїєґ]", low):
            return "uk"
        if re.search("[ыэё]", low):
            return "ru"
        bg = sum(w in {"на", "е", "да", "се", "от", "са", "за", "ще"} for w in words) + 3 * low.count("ъ")
        ru = sum(w in {"и", "в", "не", "что", "это", "он", "как", "но"} for w in words)
        return "bg" if bg > ru else "ru"
    if script != "latin":
        return script
    scores = collections.Counter({lang: sum(w in sw for w in words) for lang, sw in _STOPWORDS.items()})
    for lang, chars in _DIACRITICS.items():
        scores[lang] += sum(low.count(c) for c in chars) * (1 if lang == "vi" else 0.5)
    best = max(scores.values())
    return "en" if best == 0 or scores["en"] == best else max(scores, key=scores.get)  # ties go to English


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
