"""bumpline drivers."""
