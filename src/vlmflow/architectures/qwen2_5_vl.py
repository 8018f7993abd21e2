"""Qwen2.5-VL: windowed vision attention; the tower reorders its features itself, after the merger.

Shared vision replays the tower's blocks, so the model's own merger and window un-permutation run
on the replayed states and the features come out in image order, as in the model's own pass."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="qwen2_5_vl", model_types=("qwen2_5_vl",), vision_blocks_path="model.visual.blocks", batch_positions=True
)
