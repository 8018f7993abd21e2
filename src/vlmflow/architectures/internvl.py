"""InternVL (transformers-native `-hf` checkpoints): InternViT, pixel shuffle, a Qwen2 language model.

Its processor pads left by default; the stages pass the padding side explicitly."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="internvl", model_types=("internvl",), vision_blocks_path="model.vision_tower.encoder.layer"
)
