"""nb2prod.image."""
