"""``python -m kinema.cli`` is the ``kinema`` command (as is ``python -m kinema``)."""

from . import main

main()
