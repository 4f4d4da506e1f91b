"""Training, export and quantisation tooling (needs the ``train`` extra: torch)."""
