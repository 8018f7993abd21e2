"""What differs between VLM families, answered once per family for every stage.

`base.Architecture` holds the common answers (Qwen2-VL and LLaVA need nothing else); each family
module overrides what its modeling file does differently; `registry.architecture(model)` picks the
adapter by the config's `model_type`. Stages ask the adapter and never test the family themselves.
"""
