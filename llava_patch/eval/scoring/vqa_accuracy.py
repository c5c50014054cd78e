"""VQA answer normalisation (EvalAI's) and the VQA accuracy against ten human answers.

`normalize_answer` reproduces `EvalAIAnswerProcessor` of LLaVA's `llava/eval/m4c_evaluator.py` (taken
from MMF, itself the official VQA evaluation's processing), quirks included, because LLaVA's TextVQA
scorer and its VQAv2/VizWiz submission converters pass every answer through it:

1. lower-case; delete "," and "?"; "'s" → " 's"; newlines and tabs → spaces; strip.
2. each of ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? ! is deleted where the text has it next to a space,
   and replaced by a space otherwise; "." is deleted unless a digit follows (at most 32 of them: the
   reference passes `re.UNICODE`, 32, where `re.sub` takes its count).
3. split on whitespace; number words zero…ten (and "none") → digits; drop the articles a/an/the;
   apostrophe-less contractions get their apostrophes back ("dont" → "don't").

`vqa_accuracy` is the VQA metric as m4c's `TextVQAAccuracyEvaluator` and the official VQA evaluation
compute it: min(#other humans giving the answer / 3, 1), averaged over the ten leave-one-out subsets
of nine humans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SPACE_SENSITIVE_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_MAX_PERIODS_REMOVED = 32
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# The contractions the reference restores. Each is written with its apostrophes; the reference maps
# every spelling that lacks exactly one of them back to it ("couldnt've" and "couldn'tve" →
# "couldn't've", but not "couldntve"). Its entries that can never fire on lower-cased text ("Im",
# "Ive", "Id've", "I'dve") or map a word to itself ("let's", "she's") are left out.
_CONTRACTIONS = """
    ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't
    haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've
    might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've
    shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll
    someone's something'd something'd've something'll that's there'd there'd've there're there's
    they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're
    what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're
    why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're
    you've
""".split()


def _restorations() -> dict[str, str]:
    restore = {}
    for word in _CONTRACTIONS:
        for position, character in enumerate(word):
            if character == "'":
                restore[word[:position] + word[position + 1 :]] = word
    # The reference's table has this one entry backwards, so it removes the apostrophe instead.
    restore["somebody'd"] = "somebodyd"
    return restore


_RESTORE_CONTRACTION = _restorations()


def _strip_punctuation(text: str) -> str:
    stripped = text
    for mark in _SPACE_SENSITIVE_PUNCTUATION:
        next_to_space = f"{mark} " in text or f" {mark}" in text
        stripped = stripped.replace(mark, "" if next_to_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", stripped, count=_MAX_PERIODS_REMOVED)


def normalize_answer(answer: str) -> str:
    """EvalAI's answer normalisation (see the module docstring): "Two dogs." → "2 dogs", "a dog" → "dog"."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    words = []
    for word in _strip_punctuation(text).split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_RESTORE_CONTRACTION.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """VQA accuracy in [0, 1] of `prediction` against the human answers, all normalised first."""
    predicted = normalize_answer(prediction)
    agrees = [normalize_answer(answer) == predicted for answer in human_answers]
    total = sum(agrees)
    return sum(min(1.0, (total - own) / 3) for own in agrees) / len(agrees)
