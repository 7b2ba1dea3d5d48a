"""Small array helpers shared by the embedding and the router."""

from __future__ import annotations

import numpy as np


def segment_sums(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sum consecutive runs of ``rows``: run i is the next ``lengths[i]`` rows; an empty run sums to zero."""
    out = np.zeros((len(lengths), rows.shape[1]), dtype=rows.dtype)
    filled = lengths > 0
    if filled.any():
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
        out[filled] = np.add.reduceat(rows, starts, axis=0)
    return out
