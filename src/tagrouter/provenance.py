"""What built an artifact or a result: the versions of TagRouter and of the libraries that shape its
numbers, recorded in every saved router and every results file."""

from __future__ import annotations

import platform
from importlib import metadata

from tagrouter.version import __version__

#: Libraries whose versions can change a router's tags, scores or a benchmark's figures.
LIBRARIES = ("numpy", "scikit-learn", "scipy", "wordllama", "tokenizers")


def versions() -> dict[str, str]:
    """``{"tagrouter": ..., "python": ..., library: version or "not installed"}``."""
    found = {"tagrouter": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
