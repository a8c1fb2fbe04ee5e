"""gapbench's SLURM launcher plugin for Hydra: `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml)."""
