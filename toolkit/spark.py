"""Scoring a Spark DataFrame with a release: the public face of :mod:`nb2prod.scoring.spark`.

from nb2prod.spark import score
scored = score(spark.read.parquet("rows.parquet"), "dist/iris-classifier-1.0.0", keep=["id"])
"""

from __future__ import annotations

from .scoring.spark import score

__all__ = ["score"]
