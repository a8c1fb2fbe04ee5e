"""Statistics and the analyses over a results store: rate selection, horizons, seed stability."""
