"""Prompt-learning methods; importing this package registers every trainer and its config."""

from trainers import (  # noqa: F401  (registration)
    clip_lora,
    cocoop,
    coop,
    dept,
    distill,
    ivlp,
    kgcoop,
    maple,
    mma,
    mvlpt,
    prograd,
    promptsrc,
    tcp,
    vpt,
    zsclip,
)
