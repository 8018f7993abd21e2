"""The tiny model zoo: real Hugging Face VLM architectures built from small configs.

Checkpoints are written with `save_pretrained` and loaded by every later stage through
`AutoModelForImageTextToText` / `AutoProcessor`, exactly as a downloaded checkpoint would be.
"""
