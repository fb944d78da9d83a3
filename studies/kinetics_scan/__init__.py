"""Hand scan of the aging kinetics (issue 17)."""
