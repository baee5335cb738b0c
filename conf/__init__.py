"""Hydra YAML shipped with the package (imported as ``rlvr.conf``): primary configs and groups."""
