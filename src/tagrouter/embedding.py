"""Text embeddings. The default is WordLlama: static token embeddings whose weights ship inside the wheel,
so it runs offline, on the CPU, in well under a millisecond per query."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import Protocol

import numpy as np

from tagrouter.arrays import segment_sums


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class WordLlamaEmbedder:
    """WordLlama (256 dimensions) loaded from the installed package, never from the network.

    The vector of a text is the normalised mean of its tokens' static embeddings, as in ``WordLlama.embed``,
    computed here over one flat array of all tokens of a batch: no padding to the longest text of the
    batch, which roughly halves the time on real queries of mixed lengths.
    """

    name = "wordllama-l2-supercat-256"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        model = _load_wordllama(dim)
        self._table = model.embedding
        self._tokenizer = _unpadded(model.tokenizer)

    def __getstate__(self) -> dict[str, int]:
        """Pickle the settings only: the embedding table is reloaded from the installed package (so a
        tagger shipped to a worker process is small)."""
        return {"dim": self.dim}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["dim"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.intp, count=len(encodings))
        ids = np.fromiter(
            chain.from_iterable(e.ids for e in encodings), dtype=np.intp, count=int(lengths.sum())
        )
        np.clip(ids, 0, self._table.shape[0] - 1, out=ids)
        sums = segment_sums(self._table[ids], lengths)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        np.divide(sums, norms, out=out, where=norms > 0)
        return out


@lru_cache(maxsize=4)
def _load_wordllama(dim: int):
    import logging
    from pathlib import Path

    # WordLlama calls logging.basicConfig(level=INFO) on import, which would turn on the INFO logs of every
    # library in the host application: keep the root logger as it was.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
        from wordllama import WordLlama

        return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=dim)
    finally:
        root.handlers[:], root.level = handlers, level


def _unpadded(tokenizer):
    """A copy of a ``tokenizers.Tokenizer`` with padding and truncation turned off."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def default_embedder() -> WordLlamaEmbedder:
    """The embedded, offline default embedder (loaded once per process)."""
    return WordLlamaEmbedder()
