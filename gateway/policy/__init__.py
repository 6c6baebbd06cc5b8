"""Pure delivery policy: backoff, outcome classification, filters, dead-letter
attributes. Plain functions over plain values; imports nothing else of the gateway."""
