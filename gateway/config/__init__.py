"""Settings parsed once at the edge: the YAML/JSON shapes, durations and sizes."""
