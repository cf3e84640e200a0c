"""nb2prod.notebook."""
