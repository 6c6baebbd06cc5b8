"""Where pushes go: targets built from subscription specs, the egress policy,
and Standard Webhooks signing."""
