"""LLaVA-OneVision: a SigLIP tower, anyres tiles with newline tokens, a Qwen2 language model."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="llava_onevision",
    model_types=("llava_onevision",),
    vision_blocks_path="model.vision_tower.encoder.layers",
)
