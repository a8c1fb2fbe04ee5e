"""Speed tools: per-step benchmark of the cells (bench) and the training loop's overhead."""
