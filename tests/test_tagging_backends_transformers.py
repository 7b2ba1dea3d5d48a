"""The transformers backend end to end on tiny Qwen2 models built here (no download): chat template with the
TagGenerator prompt, left-padded batched greedy generation, the new-token bound, parsing, alignment, and a
router that saves the spec and reloads the model from its folder."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the transformers tagger needs torch (pip install torch==2.13.0)")
pytest.importorskip("transformers", reason="the transformers extra is not installed")

from conftest import fit_example  # noqa: E402
from stand_in import TINY, random_qwen2, stand_in_tokenizer  # noqa: E402

from tagrouter import Catalog, HistoryRecord, ModelCard, TagRouter  # noqa: E402
from tagrouter.embedding import default_embedder  # noqa: E402
from tagrouter.tagging.backends.chat import TAGGENERATOR_PROMPT, BackendError  # noqa: E402
from tagrouter.tagging.backends.generative import GenerativeTagger  # noqa: E402
from tagrouter.tagging.backends.transformers_lm import TransformersGenerator  # noqa: E402
from tagrouter.tagging.registry import generator_from_spec, tagger_from_spec  # noqa: E402
from tagrouter.tagging.vocabulary import build_vocabulary  # noqa: E402

ANSWER = '["grammar", "python"]'
QUERIES = [
    "Fix the grammar of this sentence: me and him goes to school yesterday.",
    "Write a python function.",
    "Why is the sky blue? Explain it to a child in two sentences, with an example.",
]
TEXTS = [*QUERIES, ANSWER, TAGGENERATOR_PROMPT, "grammar python coding poetry"]


def scripted_qwen2(tokenizer, answer: str):
    """A Qwen2 whose layers add nothing (output projections zeroed) and whose untied LM head maps each
    token of the chain  last-prompt-token -> answer tokens -> eos  to the next: it always writes ``answer``."""
    model = random_qwen2(tokenizer, {**TINY, "tie_word_embeddings": False})
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )
    chain = [
        tokenizer(prompt, add_special_tokens=False)["input_ids"][-1],
        *tokenizer(answer, add_special_tokens=False)["input_ids"],
        tokenizer.eos_token_id,
    ]
    assert len(set(chain)) == len(chain), "the scripted chain needs distinct tokens"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = model.model.norm(model.model.embed_tokens.weight)
        head = torch.zeros_like(model.lm_head.weight)
        for source, target in zip(chain, chain[1:], strict=False):
            head[target] = hidden[source] / hidden[source].norm()
        model.lm_head.weight.copy_(head * 50)
    return model


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripted-qwen2")
    tokenizer = stand_in_tokenizer(TEXTS, vocab_size=400)
    model = scripted_qwen2(tokenizer, ANSWER)
    config = model.generation_config  # sampling settings like Qwen2.5's: the backend must override them
    config.do_sample, config.temperature, config.top_p, config.top_k = True, 0.7, 0.8, 20
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("random-qwen2")
    tokenizer = stand_in_tokenizer(TEXTS, vocab_size=400)
    random_qwen2(tokenizer, {**TINY, "initializer_range": 1.0}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_prompt_uses_the_chat_template_and_the_design_prompt(scripted_dir):
    generator = generator_from_spec(f"transformers:{scripted_dir}?device=cpu")
    tokenizer, model = generator.load()
    assert tokenizer.padding_side == "left" and model.device.type == "cpu" and model.dtype == torch.float32
    text = generator.prompt_text("Write a python function.")
    assert text.startswith("<|im_start|>system\nYou are Qwen")  # the default system message
    assert TAGGENERATOR_PROMPT.format(query="Write a python function.") in text
    assert text.endswith("<|im_start|>assistant\n")
    short = generator_from_spec(f"transformers:{scripted_dir}?device=cpu&max_query_tokens=5")
    cut = short.prompt_text(QUERIES[2])
    assert QUERIES[2] not in cut and "[User Query]\nWhy" in cut  # cut to max_query_tokens tokens


def test_batched_generation_parses_and_aligns(scripted_dir):
    generator = TransformersGenerator(str(scripted_dir), device="cpu", batch_size=2, max_new_tokens=16)
    assert generator.generate(QUERIES) == [ANSWER] * 3
    embedder = default_embedder()
    vocabulary = build_vocabulary([["python"], ["cooking recipe"]], embedder, min_count=1)
    tagger = GenerativeTagger(
        generator, f"transformers:{scripted_dir}", vocabulary=vocabulary, embedder=embedder
    )
    assert tagger.tag(QUERIES) == [["python"]] * 3  # "grammar" is like no vocabulary tag: dropped
    assert GenerativeTagger(generator, "x").tag(QUERIES[:1]) == [["grammar", "python"]]


def test_max_new_tokens_bounds_the_answer(scripted_dir):
    generator = TransformersGenerator(str(scripted_dir), device="cpu", max_new_tokens=3)
    tokenizer, _ = generator.load()
    (answer,) = generator.generate(QUERIES[:1])
    assert ANSWER.startswith(answer) and answer != ANSWER
    assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) <= 3


def test_left_padded_batches_match_single_queries(random_dir):
    batched = TransformersGenerator(str(random_dir), device="cpu", batch_size=3, max_new_tokens=6)
    single = TransformersGenerator(str(random_dir), device="cpu", batch_size=1, max_new_tokens=6)
    answers = batched.generate(QUERIES)
    assert answers == single.generate(QUERIES)
    assert len(set(answers)) > 1  # different queries, different (garbage) answers: order is checked


def test_router_fitted_with_a_transformers_tagger_reloads_it_from_the_spec(scripted_dir, tmp_path):
    spec = f"transformers:{scripted_dir}?device=cpu&max_new_tokens=16&min_count=1"
    queries = [f"{q} ({i})" for i in range(3) for q in QUERIES]
    tagger = tagger_from_spec(spec, queries=queries)
    assert sorted(tagger.vocabulary.tags) == ["grammar", "python"]
    records = [
        HistoryRecord(query_id=str(i), query=q, model=m, outcome="win" if (m == "dear" or i % 2) else "loss")
        for i, q in enumerate(queries)
        for m in ("cheap", "dear")
    ]
    catalog = Catalog(
        models=[
            ModelCard(name="cheap", input_usd_per_1m=0.1, output_usd_per_1m=0.2),
            ModelCard(name="dear", input_usd_per_1m=10, output_usd_per_1m=30),
        ]
    )
    TagRouter.fit(records, catalog, tagger=tagger).save(tmp_path / "router")
    assert not list((tmp_path / "router").rglob("*.safetensors"))  # the weights stay where they are
    loaded = TagRouter.load(tmp_path / "router")
    assert loaded.tagger.spec == f"transformers:{scripted_dir}?device=cpu&max_new_tokens=16"
    assert loaded.route("Any new question?").tags == ["grammar", "python"]


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load the tagging model"):
        TransformersGenerator(str(tmp_path / "nowhere")).generate(["hello"])


def test_cli_fit_with_a_transformers_tagger(scripted_dir, tmp_path):
    spec = f"transformers:{scripted_dir}?device=cpu&batch_size=16&max_new_tokens=16&min_count=1"
    result = fit_example(tmp_path / "router", "--tagger", spec)
    assert result.exit_code == 0, result.output
    assert "saved router" in result.output and "2 tags" in result.output  # grammar, python
    assert TagRouter.load(tmp_path / "router").route("Plan a trip to Rome").tags == ["grammar", "python"]
