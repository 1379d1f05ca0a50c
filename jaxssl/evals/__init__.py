"""Evaluators of a TrainState. Each jits its own small functions."""
