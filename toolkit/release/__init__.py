"""nb2prod.release."""
