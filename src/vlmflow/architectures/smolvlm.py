"""SmolVLM: Idefics3's layout (language model at `text_model`, one image list per prompt)."""

from dataclasses import replace

from vlmflow.architectures import idefics3

ARCHITECTURE = replace(idefics3.ARCHITECTURE, family="smolvlm", model_types=("smolvlm",))
