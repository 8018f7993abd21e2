"""Pretraining the tiny zoo: fp16 export of each scale, its provenance, and the pretraining figures."""
