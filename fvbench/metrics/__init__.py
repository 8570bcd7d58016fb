"""Metrics: a small interface (torchmetrics-style declarations), a lazy registry, one file per family.

Metrics know nothing of how a video was made: they take uint8 frames (F, H, W, 3), the prompt, and optionally a
reference video of the same prompt and seed from another configuration.
"""
