"""gapbench's Hydra configs, a package only so that an install ships them (gapbench.config.CONF)."""
