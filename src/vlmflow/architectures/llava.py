"""LLaVA-1.5: a CLIP tower, an MLP projector and a Llama language model; the base answers."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="llava", model_types=("llava",), vision_blocks_path="model.vision_tower.encoder.layers"
)
