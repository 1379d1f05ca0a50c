"""Run configs, one file per run: ``--config jaxssl/configs/X.py:PRESET`` (`base` shared)."""
