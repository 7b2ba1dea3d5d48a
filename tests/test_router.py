import json
import shutil

import numpy as np
import pytest

from tagrouter.artifact import live_version
from tagrouter.deciding import Decider
from tagrouter.errors import ArtifactError, DataError
from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter
from tagrouter.scoring import PaperScorer, SmoothedScorer


def test_decision_carries_its_explanation(example_router):
    decision = example_router.route("Write a Python function that sorts a list of numbers.")
    assert decision.model in example_router.models
    assert decision.ranking[0] == decision.model and sorted(decision.ranking) == sorted(example_router.models)
    assert set(decision.scores) == set(example_router.models) == set(decision.expected_costs)
    assert decision.tags and all(isinstance(t, str) for t in decision.tags)
    assert decision.reason and decision.rule == "utility"
    as_dict = decision.to_dict()
    assert as_dict["model"] == decision.model and as_dict["tags"] == decision.tags


def test_route_batch_equals_single_routes(example_router):
    queries = ["Hello there!", "Prove that 17 is prime.", "Write a limerick about a dog."]
    batch = example_router.route_batch(queries)
    assert [d.model for d in batch] == [example_router.route(q).model for q in queries]
    for decision, query in zip(batch, queries, strict=True):
        assert decision.scores == pytest.approx(example_router.route(query).scores)
    with pytest.raises(TypeError):
        example_router.route_batch("one string")


def test_router_learns_which_model_fails_where(example_records, example_catalog):
    router = TagRouter.fit(example_records, example_catalog, scorer=SmoothedScorer(prior_strength=2.0))
    _, scores = router.score_batch(["Write a Python function that parses a CSV file.", "Hi! How are you?"])
    small = router.models.index("small-7b")
    # the small model loses on code and is fine on greetings in the example history
    assert scores[0, small] < scores[1, small] - 0.1


def test_expected_costs_use_history_output_tokens(example_router, example_records):
    model = "large-api"
    tokens = [r.output_tokens for r in example_records if r.model == model]
    assert example_router.mean_output_tokens(model) == pytest.approx(np.mean(tokens))
    query = "x" * 400  # 100 estimated input tokens
    cost = example_router.expected_costs([query])[0, example_router.models.index(model)]
    assert cost == pytest.approx((100 * 10.0 + np.mean(tokens) * 30.0) / 1e6)


def test_update_equals_refit_with_the_same_tagger(example_records, example_catalog):
    first, second = example_records[:60], example_records[60:]
    incremental = TagRouter.fit(first, example_catalog).update(second)
    refit = TagRouter.fit(
        example_records, example_catalog, tagger=incremental.tagger, scorer=incremental.scorer
    )
    assert incremental.table.equals(refit.table)
    assert dict(incremental.model.output_tokens) == dict(refit.model.output_tokens)
    queries = ["Tell me a joke.", "Integrate x^2."]
    # 42 records on 60 is past the refresh share: the update rescored everything, as a refit does
    assert np.allclose(incremental.score_batch(queries)[1], refit.score_batch(queries)[1])


def test_update_changes_routing(example_router, example_catalog, example_records):
    router = TagRouter.fit(
        example_records, example_catalog, tagger=example_router.tagger, decider=Decider("within", 0.0)
    )
    query = "What is the capital of Peru?"
    before = router.route(query).scores["small-7b"]
    losses = [
        HistoryRecord(query_id=f"new{i}", query=query, model="small-7b", outcome="loss") for i in range(40)
    ]
    updated = router.update(losses)
    assert updated.route(query).scores["small-7b"] < before - 0.1
    assert router.route(query).scores["small-7b"] == before  # the old router is unchanged


def test_catalogue_model_without_history_is_an_error(example_records, example_catalog):
    records = [r for r in example_records if r.model != "mid-70b"]
    with pytest.raises(DataError, match="no record of catalogue model"):
        TagRouter.fit(records, example_catalog)
    with pytest.raises(DataError, match="empty"):
        TagRouter.fit([], example_catalog)


def test_calibrate_sets_knob(example_router, example_records):
    queries = sorted({r.query for r in example_records})
    router = example_router.with_decider(Decider("utility", 0.0)).calibrated(queries, strong_share=0.25)
    result = router.decider.calibration
    assert result is not None and router.decider.knob == result.knob and result.queries == len(queries)
    share = np.mean([d.model == "large-api" for d in router.route_batch(queries)])
    assert abs(share - 0.25) <= 1 / len(queries) + 1e-9


def test_save_load_round_trip(example_router, tmp_path):
    router = example_router.with_decider(Decider("within", 0.05))
    router.save(tmp_path / "r")
    loaded = TagRouter.load(tmp_path / "r")
    queries = ["Write SQL to count rows.", "Good morning!"]
    assert [d.to_dict() for d in loaded.route_batch(queries)] == [
        d.to_dict() for d in router.route_batch(queries)
    ]
    assert loaded.table.equals(router.table) and loaded.decider == router.decider
    router.save(tmp_path / "r")  # overwriting a saved router works and leaves no staging folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    versions = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert versions[0] == "CURRENT" and len(versions) == 3  # the live version and the one before


def test_paper_scorer_router_round_trip(example_records, example_catalog, example_router, tmp_path):
    router = TagRouter.fit(
        example_records,
        example_catalog,
        tagger=example_router.tagger,
        scorer=PaperScorer(rewards=(1, 0.15, 0)),
    )
    router.save(tmp_path / "p")
    assert TagRouter.load(tmp_path / "p").scorer == router.scorer


def test_damaged_artifacts_fail_clearly(example_router, tmp_path):
    folder = tmp_path / "r"
    example_router.save(folder)
    with (live_version(folder) / "table.npz").open("ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(ArtifactError, match="table.npz is damaged"):
        TagRouter.load(folder)

    example_router.save(folder)
    (live_version(folder) / "tagger" / "prototypes.npy").unlink()
    with pytest.raises(ArtifactError, match="prototypes.npy listed in the manifest is missing"):
        TagRouter.load(folder)

    example_router.save(folder)
    manifest_path = live_version(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99"):
        TagRouter.load(folder)

    shutil.rmtree(folder)
    with pytest.raises(ArtifactError, match="no such router folder"):
        TagRouter.load(folder)


def test_refuses_to_overwrite_a_folder_that_is_not_a_router(example_router, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a saved router"):
        example_router.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_router_cannot_route_on_stale_scores(example_router, example_records, example_catalog):
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        example_router.decider = Decider("within", 0.5)  # type: ignore[misc]
    query = ["Write a Python function that parses a CSV file."]
    paper = example_router.with_scorer(PaperScorer())
    refit = TagRouter.fit(
        example_records, example_catalog, tagger=example_router.tagger, scorer=PaperScorer()
    )
    assert np.allclose(paper.score_batch(query)[1], refit.score_batch(query)[1])
    assert not np.allclose(paper.score_batch(query)[1], example_router.score_batch(query)[1])


class TopicTagger:
    """Tags a query "topic N ..." with "topic N" and "shared": many tags, so the table spans several blocks."""

    def tag(self, texts):
        return [[" ".join(t.split()[:2]), "shared"] for t in texts]


def test_a_small_update_rescores_only_the_touched_tags_and_a_refresh_equals_a_refit(example_catalog):
    """700 tags fill three blocks of 256 rows; one new record touches "topic 600" (block 2) and "shared"
    (block 0). The update must copy those two blocks of the table and of the tag values and share block 1
    with the old router, and its table must equal a refit's. Bug caught: an update that rescores the whole
    table (``RoutingModel.build`` on every update) or copies every block: block 1 is then a new array."""
    from tagrouter.arrays import BLOCK_ROWS

    models = example_catalog.names
    records = [
        HistoryRecord(
            query_id=str(i), query=f"topic {i} question", model=m, outcome=("win", "loss")[(i + j) % 2]
        )
        for i in range(700)
        for j, m in enumerate(models)
    ]
    router = TagRouter.fit(records, example_catalog, tagger=TopicTagger(), scorer=SmoothedScorer())
    assert len(router.table.tags) == 701 and len(router.model.values.blocks) == 3
    new = [HistoryRecord(query_id="new", query="topic 600 again", model=models[0], outcome="loss")]
    updated = router.update(new)  # 1 record on 2,100: below the refresh share, so no full rescoring
    index = updated.table.tag_index
    touched_blocks = {index["topic 600"] // BLOCK_ROWS, index["shared"] // BLOCK_ROWS}
    assert len(touched_blocks) == 2
    for old, fresh in (
        (router.model.values, updated.model.values),
        (router.table.blocks, updated.table.blocks),
    ):
        for block, (before, after) in enumerate(zip(old.blocks, fresh.blocks, strict=True)):
            assert (after is before) == (block not in touched_blocks), block
    before, after = router.model.values.to_array(), updated.model.values.to_array()
    changed = np.flatnonzero(~np.isclose(before, after).all(axis=1))
    assert set(changed) == {index["topic 600"], index["shared"]}
    refit = TagRouter.fit(records + new, example_catalog, tagger=router.tagger, scorer=router.scorer)
    assert updated.table.equals(refit.table)
    tags = updated.tagger.tag(["topic 600 again"])
    assert np.allclose(updated.model.refreshed().score_tags(tags), refit.model.score_tags(tags))


def test_a_router_built_with_another_embedder_is_refused(example_router, tmp_path):
    import hashlib

    folder = tmp_path / "r"
    example_router.save(folder)
    version = live_version(folder)
    meta = json.loads((version / "router.json").read_text())
    meta["tagger"]["config"]["embedder"] = "other-embedder-768"
    (version / "router.json").write_text(json.dumps(meta))
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["router.json"] = hashlib.sha256((version / "router.json").read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="built with the embedder 'other-embedder-768'.*refit"):
        TagRouter.load(folder)
    saved = json.loads((version / "manifest.json").read_text())["provenance"]
    assert {"tagrouter", "numpy", "scikit-learn", "wordllama", "python"} <= set(saved)


def test_route_batch_of_nothing_and_empty_queries(example_router):
    assert example_router.route_batch([]) == []
    with pytest.raises(DataError, match="query 2 is empty"):
        example_router.route_batch(["hello", " \n"])


def test_fit_chooses_the_scorer_and_the_knob_by_inner_cross_validation(example_router, tmp_path):
    tuning = example_router.model.tuning
    assert tuning is not None and tuning["queries"] == 64 and tuning["folds"] == 5
    chosen = tuning["chosen"]
    assert example_router.scorer.config() == chosen
    point = tuning["operating_point"]
    assert (example_router.decider.rule, example_router.decider.knob) == (point["rule"], point["knob"])
    grid = [{k: v for k, v in g.items() if k not in ("auc", "se", "log_loss")} for g in tuning["grid"]]
    assert chosen in grid and grid[0]["difficulty_weight"] == grid[0]["specific_weight"] == 0.0  # mixture
    example_router.save(tmp_path / "r")
    assert TagRouter.load(tmp_path / "r").model.tuning == tuning


def test_an_embedding_residual_corrects_the_scores_explains_itself_and_is_saved(example_router, tmp_path):
    from tagrouter.residual import EmbeddingResidual, embed

    model = example_router.model
    queries = ["Write a Python function to add two numbers.", "Write a poem about rain."]
    dims = embed(model.tagger, queries).shape[1]
    weights = np.zeros((dims, len(model.models)))
    residual = EmbeddingResidual(weights, np.array([0.3] + [0.0] * (len(model.models) - 1)))
    router = TagRouter(model.with_scorer(model.scorer, model.tuning, residual), example_router.decider)
    _, plain = example_router.score_batch(queries)
    _, shifted = router.score_batch(queries)
    assert np.allclose(shifted[:, 0], np.minimum(plain[:, 0] + 0.3, 1 - 1e-3))
    assert np.allclose(shifted[:, 1:], plain[:, 1:])
    for i, decision in enumerate(router.route_batch(queries)):  # +0.3, less what the clip to 0.999 takes
        moved = shifted[i, 0] - plain[i, 0]
        assert f"moved the scores by up to +{moved:.3f} ({model.models[0]})" in decision.reason
    router.save(tmp_path / "r")
    loaded = TagRouter.load(tmp_path / "r")
    assert np.allclose(loaded.score_batch(queries)[1], shifted)
