"""Chief's test suite (a regular package, so that a dependency's stray top-level `tests` cannot shadow it)."""
