"""The embedded LMDB store: one environment under the data directory."""
