"""``python -m nb2prod`` is ``nb2prod``."""

from .cli import main

main()
