"""TagRouter: route each LLM query to the cheapest model that will answer it acceptably, through tags.

What users build with: read history (:func:`read_history`, :class:`History`) and a catalogue
(:func:`load_catalog`), fit a :class:`TagRouter` (a fitted :class:`RoutingModel` + a :class:`Decider`
policy), route (:class:`Decision`), calibrate (:class:`Calibration`), save and load.
"""

from tagrouter.catalog import Catalog, Endpoint, ModelCard, load_catalog  # noqa: E402
from tagrouter.deciding import Calibration, Decider, Rule  # noqa: E402
from tagrouter.errors import ArtifactError, DataError, TagRouterError  # noqa: E402
from tagrouter.model import RoutingModel  # noqa: E402
from tagrouter.records import History, HistoryRecord, read_history, write_history  # noqa: E402
from tagrouter.router import Decision, TagRouter  # noqa: E402
from tagrouter.scoring import PaperScorer, ScorerKind, SmoothedScorer, TagTable  # noqa: E402
from tagrouter.tagging.base import Tagger  # noqa: E402
from tagrouter.version import __version__

__all__ = [
    "ArtifactError",
    "Calibration",
    "Catalog",
    "DataError",
    "Decider",
    "Decision",
    "EmbeddedTagger",
    "Endpoint",
    "History",
    "HistoryRecord",
    "ModelCard",
    "PaperScorer",
    "RoutingModel",
    "Rule",
    "ScorerKind",
    "SmoothedScorer",
    "TagRouter",
    "TagRouterError",
    "TagTable",
    "Tagger",
    "__version__",
    "load_catalog",
    "read_history",
    "write_history",
]


def __getattr__(name: str):
    """``tagrouter.EmbeddedTagger`` is imported on first use: it loads scikit-learn's text module."""
    if name == "EmbeddedTagger":
        from tagrouter.tagging.embedded import EmbeddedTagger

        return EmbeddedTagger
    raise AttributeError(f"module 'tagrouter' has no attribute {name!r}")
