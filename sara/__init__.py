"""SARA: semantically adaptive relational alignment for video diffusion transformers."""

from sara.env import apply_offline_defaults

apply_offline_defaults()

__version__ = "0.1.0"
