"""Idefics3: a SigLIP tower, a pixel-shuffle connector, the language model at `text_model`.

Its processor takes one image list per prompt."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="idefics3",
    model_types=("idefics3",),
    language_model_path="model.text_model",
    vision_blocks_path="model.vision_model.encoder.layers",
    nested_images=True,
)
