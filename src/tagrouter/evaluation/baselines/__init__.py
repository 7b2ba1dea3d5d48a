"""Baseline routers for the benchmark, each a :class:`~tagrouter.evaluation.base.RouterMethod`.

``BASELINES`` maps a name to a factory with one keyword signature for all,
``factory(seed=0, tagger_for=None) -> RouterMethod``: ``seed`` fixes every random choice (inner CV splits,
initial weights, random scores); ``tagger_for`` is used by the "+tags" variants only: called with a fold's
training queries, it returns the tag function of a tagger fitted on those queries only (the harness passes
its shared per-fold tagger; ``None``: each fit trains the default embedded tagger itself, which takes
seconds). ``OPTIONAL_BASELINES`` holds ``routellm-mf`` (RouteLLM's own MF code, 12-50 s a fit on one core)
where the optional ``routellm`` package can be imported; it is kept out of ``BASELINES`` so that
installing ``routellm`` never stretches the default benchmark by hours.
See docs/baselines.md for how each baseline is built and tuned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tagrouter.evaluation.base import RouterMethod
from tagrouter.evaluation.baselines.easiness import EasinessRouter
from tagrouter.evaluation.baselines.features import TaggerFor
from tagrouter.evaluation.baselines.forc import FORCRouter
from tagrouter.evaluation.baselines.knn import PRIOR_GRID, ROUTERBENCH_K, KNNRouter
from tagrouter.evaluation.baselines.logreg import LogRegRouter
from tagrouter.evaluation.baselines.mf import MFRouter
from tagrouter.evaluation.baselines.mlp import MLPRouter
from tagrouter.evaluation.baselines.routellm_mf import AVAILABLE as ROUTELLM_AVAILABLE
from tagrouter.evaluation.baselines.routellm_mf import RouteLLMMFRouter
from tagrouter.evaluation.baselines.simple import RandomRouter, SingleModelRouter
from tagrouter.evaluation.baselines.sw_ranking import SHARPNESS_GRID, SWRankingRouter

BaselineFactory = Callable[..., RouterMethod]


def _factory(
    router: Callable[..., RouterMethod], name: str, tagged: bool = False, **options: Any
) -> BaselineFactory:
    def make(*, seed: int = 0, tagger_for: TaggerFor | None = None) -> RouterMethod:
        tagging = {"tags": True, "tagger_for": tagger_for} if tagged else {}
        return router(name, seed=seed, **options, **tagging)

    make.__doc__ = f"A fresh {name!r} router."
    return make


BASELINES: dict[str, BaselineFactory] = {
    "random": _factory(RandomRouter, "random"),
    "knn": _factory(KNNRouter, "knn"),
    "knn-50": _factory(KNNRouter, "knn-50", ks=(ROUTERBENCH_K,)),
    "knn-prior": _factory(KNNRouter, "knn-prior", priors=PRIOR_GRID),
    "knn+tags": _factory(KNNRouter, "knn+tags", tagged=True),
    "mlp": _factory(MLPRouter, "mlp"),
    "logreg": _factory(LogRegRouter, "logreg"),
    "mf": _factory(MFRouter, "mf"),
    "mf+tags": _factory(MFRouter, "mf+tags", tagged=True),
    "sw-ranking": _factory(SWRankingRouter, "sw-ranking"),
    "sw-ranking-cv": _factory(SWRankingRouter, "sw-ranking-cv", sharpness=SHARPNESS_GRID),
    "forc": _factory(FORCRouter, "forc"),
    "forc-pool": _factory(FORCRouter, "forc-pool", context=False),
    "forc+tags": _factory(FORCRouter, "forc+tags", tagged=True),
    "knn-easiness": _factory(EasinessRouter, "knn-easiness"),
}
OPTIONAL_BASELINES: dict[str, BaselineFactory] = (
    {"routellm-mf": _factory(RouteLLMMFRouter, "routellm-mf")} if ROUTELLM_AVAILABLE else {}
)

__all__ = [
    "BASELINES",
    "BaselineFactory",
    "EasinessRouter",
    "OPTIONAL_BASELINES",
    "FORCRouter",
    "KNNRouter",
    "LogRegRouter",
    "MFRouter",
    "MLPRouter",
    "RandomRouter",
    "RouteLLMMFRouter",
    "SWRankingRouter",
    "SingleModelRouter",
]
