"""Parse the tags out of what a generative model wrote.

Tagging models answer in many shapes: a JSON list (``["grammar", "tense"]``), a list of objects
(``[{"tag": "grammar", "explanation": "..."}]``, the InsTag form), an object (``{"tags": [...]}``), a Python
list with single quotes, a comma / semicolon list, one tag per line, numbered or bulleted lists, ``tag:
explanation`` lines, code fences, a ``Tags:`` label, reasoning in ``<think>`` blocks, and JSON cut short by
the token limit. :func:`parse_tags` accepts all of them and returns the tags as written (cleaned of quotes,
markup and list markers, de-duplicated case-insensitively, in order). Normalisation to the vocabulary's form
is a later step (:func:`tagrouter.tagging.normalize.normalize_tag`).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

#: Keys under which an object in a JSON answer holds its tag (InsTag and similar formats).
TAG_KEYS = ("tag", "name", "label", "keyword", "topic")
#: Keys under which a JSON object answer holds its list of tags.
LIST_KEYS = ("tags", "labels", "keywords", "topics")
#: A parsed item longer than this many words is prose, not a tag, and is dropped.
MAX_TAG_WORDS = 8

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z]*")
_LABEL = re.compile(r"^\s*(?:tags?|keywords?|labels?|topics?|标签)\s*[:：]\s*", re.IGNORECASE)
_MARKER = re.compile(r"^\s*(?:[-*•+·]|\d{1,3}\s*[.)、:]|\(\d{1,3}\))\s*")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_HASHTAGS = re.compile(r"\s*(?:#[^\s#]+\s*)+")
_SEPARATORS = re.compile(r"[,;，；、|]")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_KEYED = re.compile(r'"(?:' + "|".join(TAG_KEYS) + r')"\s*:\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_STRIP = " \t\"'`“”‘’«»*_[](){}<>.,;:!?。，；：！？"


def parse_tags(text: str, *, max_tags: int = 16) -> list[str]:
    """The tags in a model's answer ``text`` (at most ``max_tags``; ``[]`` when it holds none)."""
    text = _FENCE.sub(" ", _THINK.sub(" ", text or "")).strip()
    if not text:
        return []
    items = _from_json(text)
    if items is None:
        items = _from_lines(text)
    tags: list[str] = []
    seen: set[str] = set()
    for item in items:
        tag = _clean(item)
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
            if len(tags) == max_tags:
                break
    return tags


def _from_json(text: str) -> list[str] | None:
    """Items of a JSON (or Python literal) answer; ``None`` when the answer holds none."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    body = text[start:]
    end = max(body.rfind("]"), body.rfind("}"))
    candidate = body[: end + 1] if end >= 0 else body
    for loads in (json.loads, ast.literal_eval):
        try:
            items = _items(loads(candidate))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if items:
            return items
    keyed = _KEYED.findall(body)  # cut short by the token limit: keep the complete entries
    quoted = keyed or _QUOTED.findall(body)
    return [_unescape(s) for s in quoted] or None


def _items(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in (*LIST_KEYS, *TAG_KEYS):
            for k, v in value.items():
                if isinstance(k, str) and k.lower() == key:
                    return _items(v)
        return [k for k in value if isinstance(k, str)]  # {"grammar": "explanation", ...}
    if isinstance(value, list | tuple):
        return [item for v in value for item in _items(v)]
    return []


def _from_lines(text: str) -> list[str]:
    items: list[str] = []
    for line in text.splitlines():
        if _HEADING.match(line):
            continue  # a markdown heading such as "## Tags"
        line = _MARKER.sub("", _LABEL.sub("", line))
        if _HASHTAGS.fullmatch(line):
            items.extend(line.split())  # "#python #sorting"
            continue
        head, colon, rest = line.partition(":") if ":" in line else line.partition("：")
        if colon and rest.strip() and len(head.split()) <= 4:
            line = head  # "tag: explanation"
        elif colon and not rest.strip():
            continue  # a header such as "Here are the tags:"
        pieces = _SEPARATORS.split(line)
        if any(len(piece.split()) > MAX_TAG_WORDS for piece in pieces):
            continue  # a sentence of prose, not a list of tags
        items.extend(pieces)
    return items


def _clean(item: str) -> str:
    tag = re.sub(r"\s+", " ", item.replace("**", " ")).strip(_STRIP).lstrip("#").strip(_STRIP)
    if not tag or len(tag.split()) > MAX_TAG_WORDS:
        return ""
    return tag


def _unescape(text: str) -> str:
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text
