"""Test helpers for the evaluator tests: a scripted fake LM and a data-presence check."""
import os

import pytest

from nanopref.common import DATA_DIR


def need(*parts):
    """Path of a shared benchmark file, or skip the test naming the missing path."""
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        pytest.skip(f"benchmark data not found: {path} (set NANOPREF_DATA to the shared data directory)")
    return path


class FakeLM:
    """The evaluators' LM interface with scripted behaviour. `respond(prompt) -> text` drives generate (cut at
    stop strings like a real LM); `loglik(context, continuation) -> float` drives loglikelihood. Every call is
    recorded in `calls` so tests can check prompts, stop strings and sampling settings."""

    def __init__(self, respond=lambda prompt: "", loglik=lambda context, continuation: 0.0):
        self.respond, self.loglik, self.calls = respond, loglik, []

    def chat(self, user, assistant_prefix=""):
        return "<|user|>\n" + user + "\n<|assistant|>\n" + assistant_prefix

    def generate(self, prompts, max_new_tokens, temperature=0.0, top_p=1.0, n=1, stop=None):
        self.calls.append(dict(kind="generate", prompts=list(prompts), max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p, n=n, stop=stop))
        outs = []
        for p in prompts:
            row = []
            for i in range(n):
                text = self.respond(p) if self.respond.__code__.co_argcount == 1 else self.respond(p, i)
                for s in stop or []:
                    text = text.split(s)[0]
                row.append(text)
            outs.append(row)
        return outs

    def loglikelihood(self, requests):
        self.calls.append(dict(kind="loglikelihood", requests=list(requests)))
        return [float(self.loglik(c, x)) for c, x in requests]


def user_of(prompt):
    """The user turn of a FakeLM chat prompt."""
    return prompt.split("<|user|>\n", 1)[1].split("\n<|assistant|>\n", 1)[0]
