"""Operating the gateway: metrics, observability routes, logs, health and retention."""
