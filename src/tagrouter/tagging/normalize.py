"""Rule-based clean-up of free-form tags: case, punctuation, spacing, plural forms, length."""

from __future__ import annotations

import re
from functools import lru_cache

from lemminflect import getLemma
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

# scikit-learn's English stop-word list (318 function and filler words such as "was", "many", "see"), plus a
# few words that are filler in a request ("please", "just").
_STOPWORDS = ENGLISH_STOP_WORDS | {
    "please",
    "just",
    "also",
    "can",
    "could",
    "would",
    "should",
    "will",
    "does",
    "did",
}
_CONTRACTION = re.compile(r"n['’]t\b|(?<=\w)['’](?:s|d|ll|re|ve|m)\b")  # "don't", "I'd", "user's"
_NON_WORD = re.compile(r"[^\w+#.\- ]+")  # \w: letters and digits of every script
_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s.\-]+|[\s.\-]+$")


@lru_cache(maxsize=1 << 16)
def singular(word: str) -> str:
    """The dictionary lemma of the noun ``word`` ('stories' -> 'story', 'emails' -> 'email'; 'christmas',
    'news', 'physics' unchanged), from lemminflect's English lexicon; a word the lexicon does not know is kept
    as written, never cut by a suffix rule."""
    if not word.isalpha():
        return word
    lemmas = getLemma(word, upos="NOUN", lemmatize_oov=False)
    return lemmas[0] if lemmas else word


def normalize_tag(raw: str, *, max_words: int = 4) -> str | None:
    """Normalise one tag; ``None`` when nothing meaningful is left.

    Lower-cases, turns ``_`` and ``/`` into spaces, drops contractions ("I'd" -> "i", "user's" -> "user"),
    removes quotes and other punctuation (keeping ``+ # . -``
    inside words, for 'c++', 'c#', 'node.js'), trims stop words at both ends, singularises the last word
    and rejects tags longer than ``max_words`` words or made only of digits.
    """
    text = raw.lower().replace("_", " ").replace("/", " ")
    text = _NON_WORD.sub(" ", _CONTRACTION.sub("", text))
    words = [_EDGE_PUNCT.sub("", w) for w in _SPACES.split(text)]
    words = [w for w in words if w]
    while words and words[0] in _STOPWORDS:
        words.pop(0)
    while words and words[-1] in _STOPWORDS:
        words.pop()
    if not words or len(words) > max_words or all(w.isdigit() for w in words):
        return None
    words[-1] = singular(words[-1])
    tag = " ".join(words)
    return tag if len(tag) >= 2 else None


def is_stopword(word: str) -> bool:
    return word in _STOPWORDS
