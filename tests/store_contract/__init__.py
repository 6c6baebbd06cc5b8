"""The store contract suite (issue 20): what every `gateway.store.base.Store` promises, run
against each implementation the `store` fixture (conftest) is parametrized over."""
