"""``python -m kinema`` is the ``kinema`` command."""

from .cli import main

main()
