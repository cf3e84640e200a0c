"""``python -m toolkit`` is ``nb2prod``."""

from toolkit.cli import main

main()
