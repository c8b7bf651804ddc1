"""Migration scripts, oldest first: the store's one schema history."""
