"""Token counts of prompts, for the context-window check and rate limits.

:func:`count_tokens` uses tiktoken's ``cl100k_base`` encoding when its BPE file is already on this machine:
in tiktoken's own cache (``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or ``TMPDIR/data-gym-cache``) or
the copy that the ``litellm`` package ships. It never downloads. Without it, the count is the conservative
estimate ceil(UTF-8 bytes / 3): cl100k averages about 4 bytes per token on English text and about 3 on
CJK text (3 bytes per character), so the estimate overshoots on English and is close on CJK. A
model's own tokenizer can differ from cl100k by some percent either way; keep a margin in
``context_window`` when it matters. :func:`tokenizer_name` says which count is in use.

The count is bounded in time: BPE encoding of one long run without white space costs time quadratic in its
length (a 990 KB run took 2.5 s), so only the first :data:`EXACT_CHARS` characters of a text are encoded;
the rest is estimated at the prefix's own tokens per byte, never below :data:`MIN_TOKENS_PER_BYTE`
(cl100k's densest ordinary text, English words, has about 0.25). Counting a text of any length and shape
then costs at most a few milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
#: tiktoken caches a download under the SHA-1 of its URL
_CL100K_FILE = hashlib.sha1(_CL100K_URL.encode()).hexdigest()
#: bytes per token of the conservative estimate
ESTIMATE_BYTES_PER_TOKEN = 3
#: characters of a text that are counted exactly (the rest is estimated from them)
EXACT_CHARS = 16_000
#: the least tokens per UTF-8 byte assumed for the part of a text beyond :data:`EXACT_CHARS`
MIN_TOKENS_PER_BYTE = 0.25
_load_lock = threading.Lock()


def _cache_dirs() -> list[Path]:
    """Where a cl100k BPE file may already be: tiktoken's cache folders, then litellm's bundled copy."""
    dirs = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR")]
    dirs.append(os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    spec = importlib.util.find_spec("litellm")  # finds the package without importing it (slow)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            dirs.append(os.path.join(location, "litellm_core_utils", "tokenizers"))
    return [Path(d) for d in dirs if d]


def estimate_tokens(text: str) -> int:
    """The conservative estimate: ceil(UTF-8 bytes / 3)."""
    return math.ceil(len(text.encode("utf-8")) / ESTIMATE_BYTES_PER_TOKEN)


def _load_cl100k(folder: Path) -> Any:
    """tiktoken's cl100k encoding from the BPE file in ``folder`` (None when it cannot be read)."""
    import tiktoken

    with _load_lock:  # tiktoken reads its cache folder from the environment: set it while loading
        before = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding("cl100k_base")
        except Exception:  # a damaged file (tiktoken checks its hash)
            return None
        finally:
            if before is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = before


@lru_cache(maxsize=1)
def _counter() -> tuple[str, Callable[[str], int]]:
    """(name, count) of the best offline token count."""
    folders = _cache_dirs() if importlib.util.find_spec("tiktoken") is not None else []
    found = (_load_cl100k(f) for f in folders if (f / _CL100K_FILE).is_file())
    encoding = next((e for e in found if e is not None), None)
    if encoding is None:
        return "estimate (UTF-8 bytes / 3)", estimate_tokens
    return "tiktoken cl100k_base", lambda text: len(encoding.encode(text, disallowed_special=()))


def count_tokens(text: str) -> int:
    """Tokens of ``text``: its first :data:`EXACT_CHARS` characters counted exactly, the rest estimated
    (see the module docstring for which count and how)."""
    count = _counter()[1]
    if len(text) <= EXACT_CHARS:
        return count(text)
    head, rest = text[:EXACT_CHARS], text[EXACT_CHARS:]
    head_tokens = count(head)
    head_bytes = len(head.encode("utf-8", "replace"))
    per_byte = max(head_tokens / head_bytes, MIN_TOKENS_PER_BYTE)
    return head_tokens + math.ceil(len(rest.encode("utf-8", "replace")) * per_byte)


def tokenizer_name() -> str:
    """Which count :func:`count_tokens` uses: ``tiktoken cl100k_base`` or the estimate."""
    return _counter()[0]
