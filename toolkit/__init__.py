"""nb2prod: turn an annotated Jupyter notebook into a verified BentoML release."""

from __future__ import annotations

__version__ = "0.1.0"
