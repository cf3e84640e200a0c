"""The contract probe's random inputs, made beside the kernel while the notebook runs.

:func:`pregenerating` starts ``python -m nb2prod.probe.pregen`` (see that module) in the
notebook's directory with the kernel's environment (its temporary files in the run's scratch), holding an exclusive lock on a file of the
run's scratch directory that the probe waits on, and stops it when execute is done, whatever
happened. Its output goes nowhere: when it fails, the probe makes the inputs itself and reports
what fails as before.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..adapters.children import die_with_parent
from ..probe.protocol import PregenPlan, ProbePlan

MODULE = "nb2prod.probe.pregen"


@contextmanager
def pregenerating(
    plan: ProbePlan, scratch: Path, *, cwd: Path, env: Mapping[str, str]
) -> Iterator[ProbePlan]:
    """``plan`` telling the probe where the inputs made meanwhile are, while they are made; the
    plan unchanged when they cannot be made before the notebook runs (an inferred contract, no
    random inputs) or the process could not start."""
    if plan.infer is not None or plan.robustness.inputs <= 0:
        yield plan
        return
    out, lock = scratch / "random-inputs.json", scratch / "random-inputs.lock"
    planned = plan.model_copy(update={"pregenerated": PregenPlan(file=str(out), lock=str(lock))})
    plan_file = scratch / "pregen-plan.json"
    plan_file.write_text(planned.model_dump_json(), encoding="utf-8")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        # the child inherits the lock with the descriptor: it is released when the child exits
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, str(plan_file), str(out)],
            cwd=cwd,
            # its temporary files (hypothesis' home) in the run's scratch directory, which is
            # removed even when this process is killed before it could remove them
            env={**env, "TMPDIR": tempfile.gettempdir()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
            preexec_fn=die_with_parent(),
        )
    except OSError:
        yield plan
        return
    finally:
        os.close(fd)
    try:
        yield planned
    finally:
        if proc.poll() is None:  # execute failed before the probe waited for it
            proc.kill()
        proc.wait()
