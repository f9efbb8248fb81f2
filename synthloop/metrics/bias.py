"""A bias proxy: which characters and which pronouns the samples talk about.

Definitions:
- character_names: the `top` most frequent capitalized words ([A-Z][a-z]+) of the real
  text seen at least min_count times away from a sentence start and not capitalized
  function words (_STOP); most frequent first, ties alphabetical. A word is at a
  sentence start when a quote mark opens right before it, or when the text before it,
  with trailing whitespace and quote marks removed, is empty or ends in . ! ? or when
  what was removed holds a line break.
- name_counts: case-sensitive whole-word occurrences of those names, anywhere.
- pronoun_counts: words (lower-cased \\w+) in the groups he (he him his himself),
  she (she her hers herself), they (they them their theirs themselves).
- total_variation: 0.5 * sum |p_i - q_i| of the two normalized count vectors.
- bias_metrics: top_name_share (share of the samples' name mentions taken by the real
  text's most mentioned name), name_tv, pronoun_tv (real vs samples) and she_share
  (she / (he + she + they) in the samples).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from .text import words

_CAPITAL = re.compile(r"\b[A-Z][a-z]+\b")
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
_STOP = frozenset(
    """
    I A An The And But Or Nor For So Yet If Then When While Where Why How What Who Whom
    Whose Which That This These Those There Here Now Oh O Ah Alas Yes No Not Nay Well
    He She It We You They Him Her His Hers Its Our Ours Your Yours Their Theirs Them Us Me
    Thou Thee Thy Thine Ye My Mine Myself Himself Herself Itself Ourselves Yourself Themselves
    Is Was Are Were Be Been Am Do Does Did Have Has Had Will Would Shall Should Can Could
    May Might Must Let At In On Of To By With From Into Upon After Before As All Some
    Once One Two Three Every Each Still Just Even Only Perhaps Indeed Come Go Look
    Good Poor Mr Mrs Miss Sir Madam Dear
""".split()
)
PRONOUN_GROUPS: dict[str, frozenset[str]] = {
    "he": frozenset({"he", "him", "his", "himself"}),
    "she": frozenset({"she", "her", "hers", "herself"}),
    "they": frozenset({"they", "them", "their", "theirs", "themselves"}),
}


def _sentence_initial(text: str, start: int) -> bool:
    if start > 0 and text[start - 1] in _QUOTES:  # opening a quotation
        return True
    j = start - 1
    while j >= 0 and (text[j].isspace() or text[j] in _QUOTES):
        if text[j] == "\n":
            return True
        j -= 1
    return j < 0 or text[j] in ".!?"


def character_names(real_texts: Iterable[str], min_count: int = 5, top: int = 50) -> list[str]:
    counts: Counter[str] = Counter()
    for text in real_texts:
        for m in _CAPITAL.finditer(text):
            if m.group() not in _STOP and not _sentence_initial(text, m.start()):
                counts[m.group()] += 1
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[:top]


def name_counts(texts: Iterable[str], names: Sequence[str]) -> Counter[str]:
    if not names:
        return Counter()
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pattern.findall(text))
    return counts


def pronoun_counts(texts: Iterable[str]) -> Counter[str]:
    group_of = {w: g for g, ws in PRONOUN_GROUPS.items() for w in ws}
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(group_of[w] for w in words(text) if w in group_of)
    return counts


def total_variation(p: Counter[str], q: Counter[str]) -> float:
    sp, sq = sum(p.values()), sum(q.values())
    if sp == 0 or sq == 0:
        return 0.0 if sp == sq else 1.0
    # sorted: a set's order changes with PYTHONHASHSEED, and so would the float sum's last digit
    return 0.5 * sum(abs(p[k] / sp - q[k] / sq) for k in sorted(set(p) | set(q)))


def bias_metrics(real_texts: Sequence[str], sample_texts: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    real_names, sample_names = name_counts(real_texts, names), name_counts(sample_texts, names)
    mentions = sum(sample_names.values())
    top_name = max(names, key=lambda n: real_names[n], default=None)  # ties: first in names
    real_pron, sample_pron = pronoun_counts(real_texts), pronoun_counts(sample_texts)
    pronouns = sum(sample_pron.values())
    return {
        "top_name_share": sample_names[top_name] / mentions if mentions else 0.0,
        "name_tv": total_variation(real_names, sample_names),
        "pronoun_tv": total_variation(real_pron, sample_pron),
        "she_share": sample_pron["she"] / pronouns if pronouns else 0.0,
    }
