"""VL conditioning (seed 003): a VLM's hidden states as a diffusion transformer's text conditioning."""
