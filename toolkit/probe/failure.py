"""Failures the user can act on, and where in the notebook an exception came from."""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

_MARKER = re.compile(r"^# ---- (?:cell (\d+) \((\w+)\)|(nb2prod default): (.*?)) ----$")


class Fail(Exception):
    """The probe stops here: ``message`` says what is wrong, ``hint`` what to change."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Block:
    """One block of the generated pipeline.py: a notebook cell or one of nb2prod's defaults."""

    first_line: int  # the marker line; the block's code starts on the next line
    label: str


class PipelineSource:
    """Maps a line of the generated pipeline.py back to the notebook cell it came from."""

    def __init__(self, path: str, text: str, labels: dict[int, str]) -> None:
        self.path = path
        self.blocks: list[Block] = []
        for number, line in enumerate(text.splitlines(), start=1):
            match = _MARKER.match(line)
            if match is None:
                continue
            if match.group(1) is not None:
                index = int(match.group(1))
                label = labels.get(index, f"cell {index} ({match.group(2)})")
            else:
                label = f"nb2prod's default ({match.group(4)})"
            self.blocks.append(Block(number, label))

    def block_of(self, line: int) -> Block | None:
        return next((b for b in reversed(self.blocks) if b.first_line < line), None)

    def where(self, line: int) -> str:
        """``cell 7 (preprocess) `def ...`, line 3`` for a line of pipeline.py."""
        block = self.block_of(line)
        if block is None:
            return f"pipeline.py line {line}"
        return f"{block.label}, line {line - block.first_line}"

    def last_frame(self, exc: BaseException) -> traceback.FrameSummary | None:
        """The innermost frame of ``exc``'s traceback that ran pipeline.py's code."""
        own = Path(self.path).resolve()
        frames = traceback.extract_tb(exc.__traceback__)
        return next((f for f in reversed(frames) if Path(f.filename).resolve() == own), None)

    def describe(self, exc: BaseException) -> str:
        """``KeyError: 'x' (in cell 7 (preprocess) `def ...`, line 3: `return ...`)``."""
        text = f"{type(exc).__name__}: {exc}"
        frame = self.last_frame(exc)
        if frame is None:
            return text
        code = f": `{frame.line.strip()}`" if frame.line else ""
        return f"{text} (in {self.where(frame.lineno or 0)}{code})"

    def cell_of(self, exc: BaseException) -> str | None:
        """The label of the notebook cell (or nb2prod default) whose code raised ``exc``."""
        frame = self.last_frame(exc)
        block = self.block_of(frame.lineno or 0) if frame is not None else None
        return block.label if block is not None else None
