"""Topics and subscriptions as registries over the store, and the declarative
configuration applied at start."""
