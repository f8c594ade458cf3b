"""The MVLPT benchmark's inputs and its activation arithmetic, on the tiny CLIP."""

from __future__ import annotations

import torch

from benchmarks import mvlpt
from benchmarks.workload import TINY
from clip.model import speedups


def test_the_2191_class_names_of_the_11_source_tasks():
    names, sources = mvlpt.class_names()
    assert len(names) == 2191 == sum(count for _, count, _ in mvlpt.TASKS)
    assert names[:2] == ["tench", "goldfish"] and sources["ImageNet"] == "open_clip"
    assert set(sources) == {task for task, _, _ in mvlpt.TASKS}


def test_the_text_share_from_token_positions_equals_the_direct_count():
    """Without checkpointing (MCoOp) and with it (MUPT), the text tower's saved bytes at the
    full list's token positions, from a line through two subsets, match the count over the full
    list to a few 1e-3 (what is not per token position, e.g. each sequence's end-of-text index,
    weighs more at this tiny width than at full width, where the benchmark's check gave 0)."""
    torch.set_grad_enabled(True)
    names = mvlpt.class_names()[0][::40]  # 55 names of every task
    clip_model = TINY.build_clip()
    subsets = [names[::4], names[::2], names[::3]]
    for variant, segments in (("MCoOp", 1), ("MUPT", 2)):
        full = mvlpt.build(variant, clip_model, names, segments)
        with speedups(shared_prefix=False):  # as text_fit counts
            direct = mvlpt.text_bytes(full)
        fitted, check = mvlpt.text_fit(variant, clip_model, subsets, segments,
                                       mvlpt.positions(full))
        assert abs(fitted - direct) < 5e-3 * direct and check < 5e-3
    assert mvlpt.positions(full, off=True) == len(names) * 77


def test_the_count_at_a_batch_from_two_small_batches_equals_the_direct_count():
    """What a step saves is per image (MUPT's prompted image tower) or shared by the batch (the
    text tower), so the line through the counts at batches 2 and 4 gives the count at 8."""
    torch.set_grad_enabled(True)
    names = mvlpt.class_names()[0][::100]
    trainer = mvlpt.build("MUPT", TINY.build_clip(), names, 2)
    fitted, check = mvlpt.batch_fit(trainer, len(names), target=8)
    assert check < 1e-6
    with speedups(shared_prefix=False):  # as batch_fit counts
        assert fitted == mvlpt.step_bytes(trainer, len(names), 8)
