"""bumpline controller."""
