"""Qwen2-VL: the base answers (M-RoPE positions come from the VLM), tower blocks at `visual.blocks`."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="qwen2_vl", model_types=("qwen2_vl",), vision_blocks_path="model.visual.blocks", batch_positions=True
)
