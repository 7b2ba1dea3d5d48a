"""Tagger backends. Importing this package registers every backend whose dependencies are installed,
so that saved routers using them can be loaded."""

from tagrouter.tagging import embedded  # noqa: F401  (registers "embedded")
from tagrouter.tagging.backends import generative  # noqa: F401  (registers "generative"; no heavy imports)
