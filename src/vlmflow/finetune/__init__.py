"""Fine-tuning (seed 002): answer-only examples, the resumable LoRA / full trainer, tracking, curves."""
