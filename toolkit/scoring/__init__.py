"""nb2prod.scoring."""
