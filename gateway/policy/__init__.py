"""Pure delivery policy: backoff, outcome classification, filters, dead-letter
attributes, attribute names, and the stored form's JSON data text. Plain functions over plain
values; imports nothing else of the gateway."""
