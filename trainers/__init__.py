"""Prompt-learning methods; importing this package registers every trainer and its config."""

from trainers import cocoop, coop, zsclip  # noqa: F401  (registration)
from trainers import ivlp, maple, vpt  # noqa: F401  (registration)
