"""FORC ("Fly-swat or cannon", Šakota et al., WSDM 2024): a regression meta-model predicts every model's
performance on a query; the cost-aware assignment on top is the harness's sweep.

FORC trains one meta-model on (query, LM) → score pairs of all the LMs it has history for, so what it
learns about a query carries over between LMs. Here the meta-model is a linear multi-task ridge
regression on the query features, with the score being acceptance (0/1) and the prediction clipped to
[0, 1]: model m's acceptance is ``shared(q) + specific_m(q)``, where ``shared`` regresses the mean
acceptance over all models of the history judged on the query (the pool and, by default, the context
models, which are never routed to) and ``specific_m`` regresses model m's deviation from that mean. With one design matrix
for all tasks this is exactly the multi-task ridge with a shared and a per-model weight vector. Both
penalties are chosen by efficient leave-one-out CV (``RidgeCV``) on the training fold.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.features import QueryFeatures, TaggerFor

ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class FORCRouter:
    """Multi-task ridge meta-model (see the module docstring); ``context`` adds the context models'
    outcomes as extra tasks of the shared component. The fit is deterministic: ``seed`` is only accepted
    for the baselines' common signature."""

    def __init__(
        self,
        name: str = "forc",
        *,
        context: bool = True,
        tags: bool = False,
        tagger_for: TaggerFor | None = None,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.context = context
        self.seed = seed
        self.features = QueryFeatures(tags, tagger_for)

    def fit(self, train: FoldData) -> None:
        x = self.features.fit_transform(train.queries, train.embeddings)
        accepted = train.accepted.astype(np.float64)
        if self.context:  # the mean over the models judged on each query
            known = np.hstack([np.ones_like(accepted), train.context_mask]).astype(np.float64)
            history = np.hstack([accepted, train.context_accepted]) * known
            mean = history.sum(axis=1) / known.sum(axis=1)
        else:
            mean = accepted.mean(axis=1)
        self._shared = RidgeCV(alphas=ALPHAS).fit(x, mean)
        self._specific = RidgeCV(alphas=ALPHAS).fit(x, accepted - mean[:, None])

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        x = self.features.transform(queries, embeddings)
        specific = self._specific.predict(x).reshape(len(x), -1)
        return np.clip(self._shared.predict(x)[:, None] + specific, 0.0, 1.0)
