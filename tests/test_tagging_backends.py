"""Generative taggers with an in-process scripted backend: parsing, alignment, vocabulary fitting, specs,
the teacher cache, vocabulary building from a teacher, and saving with a router."""

from __future__ import annotations

import json
import sys

import pytest

from tagrouter import Catalog, Decider, HistoryRecord, ModelCard, SmoothedScorer, TagRouter
from tagrouter.artifact import live_version
from tagrouter.embedding import default_embedder
from tagrouter.errors import ArtifactError, DataError
from tagrouter.tagging.backends.cache import CachedTagger
from tagrouter.tagging.backends.chat import BackendError, chat_messages
from tagrouter.tagging.backends.generative import GenerativeTagger
from tagrouter.tagging.backends.openai_chat import OpenAIChatGenerator
from tagrouter.tagging.backends.transformers_lm import TransformersGenerator
from tagrouter.tagging.embedded import EmbeddedTagger
from tagrouter.tagging.registry import (
    BACKENDS,
    Backend,
    generator_from_spec,
    load_tagger_folder,
    parse_tagger,
    tagger_from_spec,
    teacher_from_spec,
)
from tagrouter.tagging.spec import SpecError
from tagrouter.tagging.teaching import build_from_teacher
from tagrouter.tagging.vocabulary import DEFAULT_ALIGN_CUTOFF, build_vocabulary

CODE = [f"Write a python function that {v} a list" for v in ["sorts", "reverses", "sums", "filters", "maps"]]
POEMS = [f"Write a short poem about the {t}" for t in ["sea", "moon", "rain", "autumn", "forest"]]
SPEC = "openai:scripted@http://127.0.0.1:9/v1"


class ScriptedGenerator:
    """Answers like a tagging LLM, in varied formats; counts the queries it is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate(self, queries):
        self.asked += list(queries)
        return [self.answer(q) for q in queries]

    @staticmethod
    def answer(query: str) -> str:
        if "python" in query:
            return '["Python", "coding", "list processing"]'
        if "poem" in query:
            return "1. Poetry\n2. creative writing\n3. Nature"
        return "I am sorry, but I cannot find any meaningful tags for this query at all."


@pytest.fixture(scope="module")
def embedder():
    return default_embedder()


def test_free_form_tags_are_parsed_and_normalised(embedder):
    generator = ScriptedGenerator()
    tagger = GenerativeTagger(generator, SPEC, embedder=embedder)
    tags = tagger.tag([CODE[0], POEMS[0], "???", CODE[0]])
    assert tags == [
        ["python", "coding", "list processing"],
        ["poetry", "creative writing", "nature"],
        [],
        tags[0],
    ]
    assert generator.asked == [CODE[0], POEMS[0], "???"]  # each distinct text generated once


def test_fit_vocabulary_then_align_without_generating_the_history_again(embedder):
    generator = ScriptedGenerator()
    tagger = GenerativeTagger(generator, SPEC, embedder=embedder)
    vocabulary = tagger.fit_vocabulary(CODE + POEMS, min_count=3)
    assert set(vocabulary.tags) >= {"python", "coding", "poetry", "creative writing"}
    assert len(generator.asked) == len(CODE + POEMS)
    tags = tagger.tag(CODE + ["Write a haiku poem about snow"])
    assert len(generator.asked) == len(CODE + POEMS) + 1  # only the new query
    assert tags[0] == vocabulary.align([["Python", "coding", "list processing"]], embedder)[0]
    assert all(t in vocabulary.index for ts in tags for t in ts)
    assert set(tags[-1]) >= {"poetry", "creative writing"}


def test_fitted_copies_share_generated_tags_across_folds(embedder):
    generator = ScriptedGenerator()
    base = GenerativeTagger(generator, SPEC, embedder=embedder)
    folds = [CODE[:3] + POEMS[:3], CODE[2:] + POEMS[2:]]
    first, second = (base.fitted(train, min_count=2) for train in folds)
    assert sorted(generator.asked) == sorted(CODE + POEMS)  # each distinct query generated once
    assert base.vocabulary is None and first.vocabulary is not second.vocabulary
    assert first.tag(POEMS[4:]) == second.tag(POEMS[4:]) and len(generator.asked) == len(CODE + POEMS)


def test_alignment_cutoff_drops_unrelated_tags(embedder):
    vocabulary = build_vocabulary([["python", "coding"], ["poetry"]], embedder, min_count=1)
    tagger = GenerativeTagger(ScriptedGenerator(), SPEC, vocabulary=vocabulary, embedder=embedder)
    strict = GenerativeTagger(
        ScriptedGenerator(), SPEC, vocabulary=vocabulary, cutoff=1.01, embedder=embedder
    )
    assert tagger.tag([POEMS[1]]) == vocabulary.align([["Poetry", "creative writing", "Nature"]], embedder)
    assert strict.tag([POEMS[1]]) == [["poetry"]]  # exact matches only
    assert pytest.approx(0.55) == DEFAULT_ALIGN_CUTOFF


def test_default_cutoff_aligns_variants_and_drops_related_but_different_tags(embedder):
    vocabulary = build_vocabulary([["python", "grammar correction", "database"]], embedder, min_count=1)
    raw = [["Python programming", "grammar", "SQL query", "travel"]]
    assert vocabulary.align(raw, embedder, cutoff=DEFAULT_ALIGN_CUTOFF) == [["python", "grammar correction"]]


def test_fit_vocabulary_with_too_few_tags_says_so(embedder):
    tagger = GenerativeTagger(ScriptedGenerator(), SPEC, embedder=embedder)
    with pytest.raises(BackendError, match="min_count"):
        tagger.fit_vocabulary(CODE[:2], min_count=5)


def test_chat_messages_use_the_design_prompt():
    (turn,) = chat_messages("Fix my code", "taggenerator")
    assert turn["role"] == "user"
    assert turn["content"] == (
        "[System]\nYou are an expert text tag extractor. Your task is to identify key tags that readers "
        "should focus on while engaging with the user query below.\n[User Query]\nFix my code\n"
    )
    system, user = chat_messages("Fix my code", "general")
    assert (
        system["role"] == "system" and "JSON list" in system["content"] and user["content"] == "Fix my code"
    )
    with pytest.raises(ValueError, match="taggenerator"):
        chat_messages("x", "fancy")


# ---- specs --------------------------------------------------------------------------------------------------
def test_parse_spec_forms():
    assert parse_tagger("embedded").kind == "embedded"
    spec = parse_tagger("transformers:/models/tg?device=cuda&batch_size=64&vocabulary=/v")
    assert (spec.kind, spec.target) == ("transformers", "/models/tg")
    assert spec.options == {"device": "cuda", "batch_size": "64", "vocabulary": "/v"}
    assert spec.backend_spec() == "transformers:/models/tg?device=cuda&batch_size=64"
    assert spec.identity() == "transformers:/models/tg"
    same = parse_tagger("openai:m@http://h/v1?timeout=5&prompt=taggenerator&concurrency=2&max_new_tokens=9")
    assert same.identity() == "openai:m@http://h/v1?max_new_tokens=9&prompt=taggenerator"


def test_local_model_folders_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "tg").mkdir()
    monkeypatch.chdir(tmp_path)
    assert (
        parse_tagger("transformers:tg?device=cpu").backend_spec()
        == f"transformers:{tmp_path.resolve() / 'tg'}?device=cpu"
    )
    assert (
        parse_tagger("transformers:itpossible/TagGenerator").target == "itpossible/TagGenerator"
    )  # a Hub id


def test_generators_from_specs():
    tf = generator_from_spec("transformers:/models/tg?device=cpu&batch_size=4&max_new_tokens=16")
    assert isinstance(tf, TransformersGenerator)
    assert (tf.model, tf.device, tf.batch_size, tf.max_new_tokens) == ("/models/tg", "cpu", 4, 16)
    assert generator_from_spec("transformers:").model == "itpossible/TagGenerator"
    oa = generator_from_spec("openai:Qwen/Qwen2.5-7B@http://localhost:8000/v1?concurrency=3&timeout=2.5")
    assert isinstance(oa, OpenAIChatGenerator)
    assert (oa.model, oa.base_url, oa.concurrency, oa.timeout) == (
        "Qwen/Qwen2.5-7B",
        "http://localhost:8000/v1",
        3,
        2.5,
    )
    assert oa.url == "http://localhost:8000/v1/chat/completions"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt4", "unknown tagger"),
        ("openai:gpt-4o", "MODEL@URL"),
        ("openai:gpt-4o@localhost:8000", "http://"),
        ("transformers:x?batch_size=many", "batch_size='many' must be a int"),
        ("transformers:x?colour=red", "unknown option 'colour'"),
        ("transformers:x?prompt=fancy", "prompt style"),
        ("openai:m@http://h/v1?retries=-1", "retries"),
        ("transformers:x?min_new_tokens=32", "unknown option"),
    ],
)
def test_bad_specs_say_what_is_expected(spec, message):
    with pytest.raises(SpecError, match=message):
        generator_from_spec(spec)


def test_tagger_and_teacher_specs(tmp_path, embedder):
    with pytest.raises(SpecError, match="teacher only"):
        tagger_from_spec("keyphrase")
    with pytest.raises(SpecError, match="not a teacher"):
        teacher_from_spec("embedded")
    with pytest.raises(SpecError, match="takes no options"):
        teacher_from_spec("keyphrase?fast=1")
    with pytest.raises(SpecError, match="takes no options"):
        tagger_from_spec("embedded?min_count=2", queries=CODE)
    with pytest.raises(SpecError, match="vocab build"):
        tagger_from_spec(f"{SPEC}?vocabulary={tmp_path}")
    with pytest.raises(ArtifactError, match="not a saved tagger"):
        tagger_from_spec(f"embedded:{tmp_path}")
    assert isinstance(tagger_from_spec("embedded", queries=CODE + POEMS, embedder=embedder), EmbeddedTagger)
    tagger = tagger_from_spec(f"{SPEC}?cutoff=0.7&max_tags=3&min_count=2", embedder=embedder)
    assert (tagger.cutoff, tagger.max_tags, tagger.spec, tagger.vocabulary) == (0.7, 3, SPEC, None)


# ---- teacher cache and vocabulary building ------------------------------------------------------------------
class CountingTeacher:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def tag(self, texts):
        self.asked += list(texts)
        return [[t.split()[-1], "writing"] for t in texts]


def test_cache_tags_each_text_once_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    teacher = CountingTeacher()
    first = CachedTagger(teacher, path, "t1")
    assert first.tag(["a b", "c d", "a b"]) == [["b", "writing"], ["d", "writing"], ["b", "writing"]]
    assert teacher.asked == ["a b", "c d"]
    with path.open("a") as handle:
        handle.write('{"key": "torn')  # an interrupted write
    again = CachedTagger(teacher, path, "t1")
    assert again.skipped_lines == 1
    assert again.tag(["c d", "e f"]) == [["d", "writing"], ["f", "writing"]]
    assert teacher.asked == ["a b", "c d", "e f"]
    assert (again.calls, again.hits) == (1, 1)
    other = CachedTagger(teacher, path, "t2")  # another teacher: its own entries
    other.tag(["a b"])
    assert teacher.asked[-1] == "a b"
    assert len(CachedTagger(teacher, path, "t1")._tags) == 4  # noqa: SLF001 (a b, c d, e f + t2's a b)


def test_build_from_teacher_writes_vocabulary_cache_and_student(tmp_path, embedder):
    queries = CODE + POEMS
    result = build_from_teacher(
        queries, "keyphrase", tmp_path / "v", min_count=2, student=True, embedder=embedder
    )
    assert result.queries == len(queries) and result.teacher_calls == len(queries) and result.cache_hits == 0
    assert (tmp_path / "v" / "vocabulary.json").is_file() and (
        tmp_path / "v" / "tag_embeddings.npy"
    ).is_file()
    build = json.loads((tmp_path / "v" / "build.json").read_text())
    assert build["teacher"] == "keyphrase" and build["vocabulary_size"] == len(result.vocabulary)
    student = load_tagger_folder(tmp_path / "v" / "student", kind="embedded")
    assert isinstance(student, EmbeddedTagger)
    assert (
        student.tag(CODE[:1])[0]
        == tagger_from_spec(f"embedded:{tmp_path / 'v' / 'student'}").tag(CODE[:1])[0]
    )
    rerun = build_from_teacher(queries, "keyphrase", tmp_path / "v", min_count=2, embedder=embedder)
    assert (rerun.teacher_calls, rerun.cache_hits) == (0, len(queries))
    assert rerun.vocabulary.tags == result.vocabulary.tags
    with pytest.raises(DataError, match="min_count"):
        build_from_teacher(queries, "keyphrase", tmp_path / "w", min_count=100, embedder=embedder)


# ---- a router with a generative tagger ----------------------------------------------------------------------
def _history() -> list[HistoryRecord]:
    records = []
    for number, query in enumerate(CODE + POEMS):
        for model in ("cheap", "dear"):
            loses = model == "cheap" and "python" in query
            records.append(
                HistoryRecord(
                    query_id=str(number), query=query, model=model, outcome="loss" if loses else "win"
                )
            )
    return records


def test_router_with_generative_tagger_saves_spec_and_vocabulary_not_weights(tmp_path, embedder):
    catalog = Catalog(
        models=[
            ModelCard(name="cheap", input_usd_per_1m=0.1, output_usd_per_1m=0.2),
            ModelCard(name="dear", input_usd_per_1m=10, output_usd_per_1m=30),
        ]
    )
    generator = ScriptedGenerator()
    tagger = GenerativeTagger(generator, SPEC, cutoff=0.6, embedder=embedder)
    tagger.fit_vocabulary(CODE + POEMS, min_count=2)
    router = TagRouter.fit(
        _history(),
        catalog,
        tagger=tagger,
        scorer=SmoothedScorer(prior_strength=2),
        decider=Decider("gap", 0.3),
    )
    assert len(generator.asked) == len(CODE + POEMS)  # the fit reused the vocabulary's tags
    assert router.route("Write a python function that zips a list").model == "dear"
    assert router.route("Write a short poem about the stars").model == "cheap"
    router.save(tmp_path / "router")
    version = live_version(tmp_path / "router")
    saved = json.loads((version / "router.json").read_text())["tagger"]
    assert saved == {"kind": "generative", "config": {"spec": SPEC, "cutoff": 0.6, "max_tags": 8}}
    assert sorted(p.name for p in (version / "tagger").iterdir()) == [
        "tag_embeddings.npy",
        "vocabulary.json",
    ]
    loaded = TagRouter.load(tmp_path / "router")
    assert isinstance(loaded.tagger, GenerativeTagger)
    assert (
        isinstance(loaded.tagger.generator, OpenAIChatGenerator)
        and loaded.tagger.generator.model == "scripted"
    )
    assert loaded.tagger.vocabulary.tags == tagger.vocabulary.tags
    loaded.tagger.generator = ScriptedGenerator()  # the scripted backend instead of the (absent) endpoint
    queries = ["Write a python function that zips a list", "Write a short poem about the stars"]
    assert [d.to_dict() for d in loaded.route_batch(queries)] == [
        d.to_dict() for d in router.route_batch(queries)
    ]


class WordTagger:
    """A tagger new to the registry: each query's words of at least ``length`` letters."""

    kind = "words"

    def __init__(self, length: int) -> None:
        self.length = length

    def tag(self, texts):
        return [[w for w in t.lower().split() if len(w) >= self.length] for t in texts]

    def save(self, folder):
        return {"length": self.length}


def test_a_new_tagger_is_one_registry_entry(tmp_path, monkeypatch):
    entry = Backend(
        "words[?length=N]",
        lambda parsed: parsed,
        router=lambda parsed, fitting: WordTagger(parsed.option("length", int, 6)),
        kind=WordTagger.kind,
        load=lambda folder, config: WordTagger(int(config["length"])),
    )
    with pytest.raises(SpecError, match="unknown tagger 'words"):
        tagger_from_spec("words?length=7")
    monkeypatch.setitem(BACKENDS, "words", entry)
    tagger = tagger_from_spec("words?length=7")
    assert tagger.tag(["Write a python function"]) == [["function"]]
    with pytest.raises(SpecError, match="'words' is a student, not a teacher"):
        teacher_from_spec("words")
    catalog = Catalog(
        models=[
            ModelCard(name="cheap", input_usd_per_1m=0.1, output_usd_per_1m=0.2),
            ModelCard(name="dear", input_usd_per_1m=10, output_usd_per_1m=30),
        ]
    )
    router = TagRouter.fit(_history(), catalog, tagger=tagger)
    router.save(tmp_path / "router")
    loaded = TagRouter.load(tmp_path / "router")
    assert isinstance(loaded.tagger, WordTagger) and loaded.tagger.length == 7
    monkeypatch.delitem(BACKENDS, "words")
    with pytest.raises(ArtifactError, match="kind 'words', which this installation does not know"):
        TagRouter.load(tmp_path / "router")


def test_transformers_backend_without_torch_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(BackendError, match=r"pip install torch==2\.13\.0 'tagrouter\[transformers\]'"):
        TransformersGenerator("/models/tg").generate(["hello"])
