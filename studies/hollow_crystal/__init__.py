"""Why the aged NC turned hollow (issue 26): vacancy energetics of the CE and its reference."""
