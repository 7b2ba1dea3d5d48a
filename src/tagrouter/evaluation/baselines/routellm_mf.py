"""RouteLLM's own matrix-factorisation code, trained on the fold: ``MFModel_Train``, ``PairwiseDataset``
and ``train_loops`` of ``routellm.routers.matrix_factorization.train_matrix_factorization`` (package
``routellm``), with RouteLLM's published training settings, on CPU and offline.

Battles: every (training query, pool model) is one battle of the model against AlpacaEval's reference
answer, won by the model when accepted. The query embeddings are our offline embeddings, handed to the
model through the ``npy_path`` it loads its prompt table from (RouteLLM uses OpenAI embeddings there).
At prediction the prompt table is swapped for the test embeddings and the acceptance probability is
``σ(logit(model beats reference))`` from RouteLLM's own ``forward``.

Optional: ``routellm`` pulls in torch, transformers, litellm and more, so it is not a dependency of
tagrouter; :data:`AVAILABLE` says whether it can be imported (its modules build an OpenAI client at
import, which needs ``OPENAI_API_KEY`` set to anything; nothing is sent).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tagrouter.evaluation.base import FoldData

AVAILABLE = importlib.util.find_spec("routellm") is not None and importlib.util.find_spec("torch") is not None
REFERENCE = "text_davinci_003"
#: RouteLLM's settings (train_matrix_factorization.py ``__main__``)
SETTINGS = {"dim": 128, "batch_size": 64, "num_epochs": 100, "alpha": 0.1, "lr": 3e-4, "weight_decay": 1e-5}


@contextmanager
def _players(module: Any, ids: dict[str, int]) -> Iterator[None]:
    """RouteLLM's training module with our players as its ``MODEL_IDS`` and a silent progress bar, for the
    duration of one fit; its own values are restored afterwards."""
    saved_ids, saved_tqdm = dict(module.MODEL_IDS), module.tqdm
    module.MODEL_IDS.clear()
    module.MODEL_IDS.update(ids)
    module.tqdm = partial(saved_tqdm, disable=True)
    try:
        yield
    finally:
        module.MODEL_IDS.clear()
        module.MODEL_IDS.update(saved_ids)
        module.tqdm = saved_tqdm


def _training_module() -> Any:
    from routellm.routers.matrix_factorization import train_matrix_factorization

    return train_matrix_factorization


class RouteLLMMFRouter:
    """RouteLLM's MF model and training loop on the fold's battles against the reference."""

    def __init__(self, name: str = "routellm-mf", *, seed: int = 0, **settings: float) -> None:
        self.name = name
        self.seed = seed
        self.settings = {**SETTINGS, **settings}

    def fit(self, train: FoldData) -> None:
        import torch

        module = _training_module()
        players = [*train.models, REFERENCE]
        battles = [
            {"model_a": model, "model_b": REFERENCE, "winner": "model_a" if ok else "model_b", "idx": row}
            for row, outcomes in enumerate(train.accepted)
            for model, ok in zip(train.models, outcomes, strict=True)
        ]
        s = self.settings
        torch.manual_seed(self.seed)
        ids = {player: i for i, player in enumerate(players)}
        with tempfile.TemporaryDirectory() as folder, _players(module, ids):
            table = Path(folder) / "prompts.npy"
            np.save(table, train.embeddings.astype(np.float32))
            data = module.PairwiseDataset(battles)
            net = module.MFModel_Train(
                dim=int(s["dim"]),
                num_models=len(players),
                num_prompts=len(train.queries),
                text_dim=train.embeddings.shape[1],
                use_proj=True,
                npy_path=str(table),
            )
            module.train_loops(
                net,
                data.get_dataloaders(int(s["batch_size"]), shuffle=True),
                data.get_dataloaders(1024, shuffle=False),
                lr=s["lr"],
                weight_decay=s["weight_decay"],
                alpha=s["alpha"],
                num_epochs=int(s["num_epochs"]),
                device="cpu",
            )
        self._net = net.eval()
        self._models = len(train.models)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        import torch

        n = len(queries)
        table = torch.tensor(np.asarray(embeddings, dtype=np.float32))
        self._net.Q = torch.nn.Embedding.from_pretrained(table)
        reference = torch.full((n,), self._models, dtype=torch.int64)
        prompts = torch.arange(n)
        with torch.no_grad():
            columns = [
                torch.sigmoid(
                    self._net(torch.full((n,), m, dtype=torch.int64), reference, prompts, test=True)
                )
                for m in range(self._models)
            ]
        return torch.stack(columns, dim=1).reshape(n, self._models).numpy().astype(np.float64)
