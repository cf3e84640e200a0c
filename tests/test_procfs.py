"""The memory of a process tree, read from /proc (what verify records for deploy/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nb2prod.adapters.procfs import tree_memory_bytes

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

BLOCK = 64 << 20
# a child that holds 64 MiB of its own (written, so resident) until its stdin closes
HOLD = f"import sys; block = bytearray({BLOCK}); print(flush=True); sys.stdin.read()"


def test_a_tree_counts_its_children() -> None:
    alone = tree_memory_bytes(os.getpid())
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()  # the block is allocated
        own = tree_memory_bytes(child.pid)
        with_child = tree_memory_bytes(os.getpid())
    finally:
        child.communicate(b"")
    assert alone is not None and own is not None and with_child is not None
    assert own > BLOCK
    assert with_child >= alone + BLOCK - (4 << 20)


def test_a_process_that_does_not_exist_has_no_answer() -> None:
    assert tree_memory_bytes(2**22 + 12345) is None  # above the largest pid_max
