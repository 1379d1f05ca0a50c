"""Flax Linen backbones and heads. No optax imports here."""
