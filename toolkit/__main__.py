"""``python -m nb2prod`` is ``nb2prod``."""

from .cli import main

if __name__ == "__main__":  # not when a worker process (spawn) imports the parent's main module
    main()
