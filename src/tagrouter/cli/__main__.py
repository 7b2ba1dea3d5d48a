"""``python -m tagrouter.cli``: the same as the ``tagrouter`` command."""

from tagrouter.cli import main

main()
