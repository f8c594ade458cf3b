"""Prompt-learning methods; importing this package registers every trainer and its config."""

from trainers import (  # noqa: F401  (registration)
    cocoop,
    coop,
    coprompt,
    dept,
    distill,
    ivlp,
    kgcoop,
    maple,
    mvlpt,
    prograd,
    promptkd,
    promptsrc,
    vpt,
    zsclip,
)
