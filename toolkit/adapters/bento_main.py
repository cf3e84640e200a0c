"""``python -m nb2prod.adapters.bento_main ARGS``: the ``bentoml`` command with a metrics
directory of its own.

BentoML keeps its Prometheus multiprocess files in ``$BENTOML_HOME/prometheus_multiproc_dir`` and
empties that directory whenever a server starts, so a server started to verify release 1.1.0
wiped the counters of release 1.0.0 served from the same ``BENTOML_HOME``. Every server nb2prod
starts runs through this module instead, with ``NB2PROD_METRICS_DIR`` naming a directory for its
process tree alone (the arbiter hands it to its workers as ``PROMETHEUS_MULTIPROC_DIR``); the same
setting BentoML's own pytest plugin makes. Without the variable this is plain ``bentoml``.

Rich's emoji codes are off: BentoML prints ``__tag__:NAME:VERSION`` through rich, which turned
the tag of a service named ``cancer`` (or ``cat``, ``fire``, ...) into ``__tag__♋VERSION``.
"""

from __future__ import annotations

import os

METRICS_DIR_ENV = "NB2PROD_METRICS_DIR"


def plain_console() -> None:
    """Rich's global console, the one ``rich.print`` writes to, without emoji codes."""
    import rich

    rich.reconfigure(emoji=False)


def main() -> None:
    plain_console()
    directory = os.environ.pop(METRICS_DIR_ENV, None)
    if directory:
        from bentoml._internal.configuration.containers import BentoMLContainer

        BentoMLContainer.prometheus_multiproc_dir.set(directory)
    from bentoml_cli.cli import cli

    cli()


if __name__ == "__main__":
    main()
