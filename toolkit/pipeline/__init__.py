"""nb2prod.pipeline."""
