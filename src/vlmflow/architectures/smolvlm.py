"""SmolVLM: Idefics3's layout (language model at `text_model`, one image list per prompt)."""

from vlmflow.architectures.base import Architecture

ARCHITECTURE = Architecture(
    family="smolvlm",
    model_types=("smolvlm",),
    language_model_path="model.text_model",
    vision_blocks_path="model.vision_model.encoder.layers",
    nested_images=True,
)
