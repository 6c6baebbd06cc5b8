"""Publishing: the receiver's routes, bounded body reading, and bearer-token auth."""
