"""bumpline sequences."""
