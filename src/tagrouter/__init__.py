"""TagRouter: route each LLM query to the cheapest model that will answer it acceptably, through tags."""

__version__ = "0.1.0"

from tagrouter.catalog import Catalog, Endpoint, ModelCard, load_catalog  # noqa: E402
from tagrouter.deciding import Decider  # noqa: E402
from tagrouter.errors import ArtifactError, DataError, TagRouterError  # noqa: E402
from tagrouter.records import HistoryRecord, read_history, write_history  # noqa: E402
from tagrouter.router import Decision, TagRouter  # noqa: E402
from tagrouter.scoring import PaperScorer, SmoothedScorer, TagTable  # noqa: E402

__all__ = [
    "ArtifactError",
    "Catalog",
    "DataError",
    "Decider",
    "Decision",
    "Endpoint",
    "HistoryRecord",
    "ModelCard",
    "PaperScorer",
    "SmoothedScorer",
    "TagRouter",
    "TagRouterError",
    "TagTable",
    "__version__",
    "load_catalog",
    "read_history",
    "write_history",
]
