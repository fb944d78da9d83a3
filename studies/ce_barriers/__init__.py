"""One-off research studies of segsim (see studies/README.md); never imported by the package."""
