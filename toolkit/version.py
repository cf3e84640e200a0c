"""nb2prod's version: one line every module may import without loading the rest of nb2prod."""

__version__ = "0.1.0"
