"""bumpline sim."""
