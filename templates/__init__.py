"""nb2prod's templates, installed as the package data ``nb2prod.templates`` (see pyproject.toml)."""
