"""VQA evaluation: batched, resumable inference with answer modes and constrained decoding."""
