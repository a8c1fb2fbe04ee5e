"""One training job: the Lightning module, its loop callbacks, signals, state on disk, continuation and evaluation."""
