"""Event storage: the interface and its LMDB implementation."""
