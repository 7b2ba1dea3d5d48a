"""Text embeddings. The default is WordLlama: static token embeddings whose weights ship inside the wheel,
so it runs offline, on the CPU, in well under a millisecond per query."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class WordLlamaEmbedder:
    """WordLlama (256 dimensions) loaded from the installed package, never from the network."""

    name = "wordllama-l2-supercat-256"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self._model = _load_wordllama(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._model.embed(list(texts), norm=True), dtype=np.float32)
        return vectors.reshape(len(texts), self.dim)


@lru_cache(maxsize=4)
def _load_wordllama(dim: int):
    from pathlib import Path

    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=dim)


def default_embedder() -> WordLlamaEmbedder:
    """The embedded, offline default embedder (loaded once per process)."""
    return WordLlamaEmbedder()
