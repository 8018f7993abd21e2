"""Dataset caching: upstream formats (VQAv2, TextVQA, Kvasir-VQA, swap pairs) to Record JSONL."""
