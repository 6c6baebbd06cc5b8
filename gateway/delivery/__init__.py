"""The push engine: lanes, outcome recording, concurrency, push building and sinks."""
