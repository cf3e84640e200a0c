"""nb2prod.ops."""
