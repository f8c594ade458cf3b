"""Prompt-learning methods; importing this package registers every trainer and its config."""

from trainers import cocoop, coop, ivlp, maple, mvlpt, promptsrc, vpt, zsclip  # noqa: F401
