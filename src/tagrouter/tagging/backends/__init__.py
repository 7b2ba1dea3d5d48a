"""Tagger backends. Importing this package registers every backend whose dependencies are installed,
so that saved routers using them can be loaded."""

from tagrouter.tagging import embedded  # noqa: F401  (registers "embedded")
