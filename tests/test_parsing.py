"""The tag parser on a table of real-looking outputs of tagging models."""

from __future__ import annotations

import pytest

from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.parsing import parse_tags

CASES = [
    # JSON lists, with duplicates differing in case
    ('["grammar", "tense conversion", "Grammar"]', ["grammar", "tense conversion"]),
    ('[ "Python" ,"sorting algorithm" ]', ["Python", "sorting algorithm"]),
    # InsTag-style objects, inside a code fence
    (
        '```json\n[{"tag": "grammar", "explanation": "The user asks about grammar."},\n'
        ' {"tag": "sentence rewriting", "explanation": "Rewrite it."}]\n```',
        ["grammar", "sentence rewriting"],
    ),
    ('{"tags": ["python", "list comprehension"]}', ["python", "list comprehension"]),
    ('{"Tags": [{"name": "travel"}, {"name": "itinerary planning"}]}', ["travel", "itinerary planning"]),
    ('{"grammar": "about grammar", "tense": "about tenses"}', ["grammar", "tense"]),
    # cut short by the token limit: the complete entries only
    ('["grammar", "tense conversion", "sentence rew', ["grammar", "tense conversion"]),
    ('[{"tag": "math", "explanation": "arith"}, {"tag": "word prob', ["math"]),
    # a Python list with single quotes
    ("['python', 'recursion', 'fibonacci']", ["python", "recursion", "fibonacci"]),
    # comma, semicolon and Chinese separators, trailing period, a "Tags:" label
    ("grammar, tense conversion, sentence rewriting.", ["grammar", "tense conversion", "sentence rewriting"]),
    ("Tags: travel; budget; japan", ["travel", "budget", "japan"]),
    ("标签：语法，时态转换、句子改写", ["语法", "时态转换", "句子改写"]),
    # numbered and bulleted lists, markdown emphasis, "tag: explanation" lines, a header line
    (
        "1. Grammar\n2. Tense conversion\n3) Sentence rewriting",
        ["Grammar", "Tense conversion", "Sentence rewriting"],
    ),
    (
        "Here are the key tags:\n- **Cooking**: the query is about a recipe\n- **Baking**: cakes",
        ["Cooking", "Baking"],
    ),
    ("## Tags\n* email writing\n* business communication\n", ["email writing", "business communication"]),
    ("(1) physics\n(2) classical mechanics", ["physics", "classical mechanics"]),
    ('"history"\n"world war ii"\n', ["history", "world war ii"]),
    ("#python #coding #python", ["python", "coding"]),
    # reasoning blocks are ignored; programming language names keep their symbols
    ("<think>The user wants code, maybe python.</think>\ncoding, python", ["coding", "python"]),
    ("C++, node.js, C#", ["C++", "node.js", "C#"]),
    # no tags at all
    ("", []),
    ("   \n  ", []),
    ("Sure! Here are the tags for your query, as you asked:\npoetry, nature", ["poetry", "nature"]),
    ("I am sorry, but I cannot identify any meaningful tags for this particular query at all.", []),
    ("[]", []),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_parse_tags_table(text, expected):
    assert parse_tags(text) == expected


def test_max_tags_keeps_the_first():
    assert parse_tags('["a1", "b2", "c3", "d4"]', max_tags=2) == ["a1", "b2"]


def test_unescapes_json_strings_in_cut_answers():
    assert parse_tags('["caf\\u00e9 culture", "wi') == ["café culture"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            "Café culture, naïve Bayes classifiers, résumés",
            ["café culture", "naïve bayes classifiers", "résumés"],  # not in the lemma dictionary: kept
        ),
        ("语法，时态转换", ["语法", "时态转换"]),
        ('["Grammar", "?!", "1984"]', ["grammar"]),
    ],
)
def test_parsed_tags_keep_letters_of_every_script_through_normalisation(answer, expected):
    assert [t for t in map(normalize_tag, parse_tags(answer)) if t] == expected
