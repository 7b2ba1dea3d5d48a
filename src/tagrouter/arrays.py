"""Array helpers shared by the embedding, the tag table and the routing model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Rows per block of a :class:`RowBlocks` array.
BLOCK_ROWS = 256


def segment_sums(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sum consecutive runs of ``rows``: run i is the next ``lengths[i]`` rows; an empty run sums to zero."""
    out = np.zeros((len(lengths), rows.shape[1]), dtype=rows.dtype)
    filled = lengths > 0
    if filled.any():
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
        out[filled] = np.add.reduceat(rows, starts, axis=0)
    return out


@dataclass(frozen=True, eq=False)
class RowBlocks:
    """An immutable float64 array of ``n_rows`` rows of shape ``row_shape``, stored as blocks of
    :data:`BLOCK_ROWS` rows.

    A change (:meth:`with_rows`) copies only the blocks holding the changed rows and shares every other block
    with the old version, so it costs in proportion to the rows it touches, not to the array; readers of the
    old version never see the change.
    """

    blocks: tuple[np.ndarray, ...]
    n_rows: int
    row_shape: tuple[int, ...]

    @classmethod
    def from_array(cls, array: np.ndarray) -> RowBlocks:
        array = np.asarray(array, dtype=float)
        n_rows, row_shape = array.shape[0], tuple(array.shape[1:])
        blocks = []
        for start in range(0, n_rows, BLOCK_ROWS):
            block = np.zeros((BLOCK_ROWS, *row_shape))
            part = array[start : start + BLOCK_ROWS]
            block[: len(part)] = part
            blocks.append(block)
        return cls(tuple(blocks), n_rows, row_shape)

    def to_array(self) -> np.ndarray:
        if not self.blocks:
            return np.zeros((0, *self.row_shape))
        return np.concatenate(self.blocks)[: self.n_rows]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (an index array), in that order."""
        rows = np.asarray(rows, dtype=np.intp)
        block_of, offset = np.divmod(rows, BLOCK_ROWS)
        if len(self.blocks) == 1:
            return self.blocks[0][offset]
        out = np.empty((len(rows), *self.row_shape))
        for block in np.unique(block_of):
            here = block_of == block
            out[here] = self.blocks[block][offset[here]]
        return out

    def with_rows(self, rows: np.ndarray, values: np.ndarray, *, add: bool = False) -> RowBlocks:
        """A new version with ``values`` written into (``add``: added to) ``rows``; rows at or past
        ``n_rows`` extend the array (rows in between are zero). ``rows`` must be distinct."""
        rows = np.asarray(rows, dtype=np.intp)
        values = np.asarray(values, dtype=float).reshape(len(rows), *self.row_shape)
        n_rows = max(self.n_rows, int(rows.max()) + 1) if len(rows) else self.n_rows
        blocks = list(self.blocks)
        while len(blocks) * BLOCK_ROWS < n_rows:
            blocks.append(np.zeros((BLOCK_ROWS, *self.row_shape)))
        block_of, offset = np.divmod(rows, BLOCK_ROWS)
        for block in np.unique(block_of):
            here = block_of == block
            copy = blocks[block].copy()
            if add:
                copy[offset[here]] += values[here]
            else:
                copy[offset[here]] = values[here]
            blocks[block] = copy
        return RowBlocks(tuple(blocks), n_rows, self.row_shape)
