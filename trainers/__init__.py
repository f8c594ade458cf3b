"""Prompt-learning methods; importing this package registers every trainer and its config."""

from trainers import (  # noqa: F401  (registration)
    clip_lora,
    cocoop,
    coop,
    coprompt,
    dept,
    distill,
    ivlp,
    kgcoop,
    maple,
    mma,
    mvlpt,
    prograd,
    promptkd,
    promptsrc,
    tcp,
    vpt,
    zsclip,
)
