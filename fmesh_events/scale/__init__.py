"""scale: the sampler publishes scale-signals; the scaler turns them into replica counts
(DESIGN.md, "scale")."""
