import logging
import subprocess
import sys

import numpy as np

from tagrouter.embedding import _load_wordllama, default_embedder


def test_matches_wordllama_on_texts_of_mixed_lengths():
    texts = [
        "hi",
        "Write a Python function that merges two sorted lists in linear time. " * 20,
        "",
        "ok then",
    ]
    ours = default_embedder().embed(texts)
    reference = _load_wordllama(256).embed(texts[:2] + texts[3:], norm=True)
    assert np.allclose(ours[[0, 1, 3]], reference, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours[[0, 1, 3]], axis=1), 1.0, atol=1e-5)
    assert not ours[2].any()  # an empty text has no tokens: a zero vector
    assert default_embedder().embed([]).shape == (0, 256)


def test_loading_leaves_the_root_logger_alone():
    code = (
        "import logging; from tagrouter.embedding import default_embedder; default_embedder(); "
        "root = logging.getLogger(); print(len(root.handlers), root.level)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["0", str(logging.WARNING)]
