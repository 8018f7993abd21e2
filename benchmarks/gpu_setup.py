"""A GPU-sized model and dataset for the benchmarks, built offline: Qwen2-VL-2B's architecture with
seeded random weights, and synthetic VQAv2 questions cached as the workflow caches them.

The embedded default's checkpoints are tiny (a GPU answers them faster than it can be fed), so GPU
throughput needs a model of a real size. No hub is reachable, so the checkpoint is Qwen2-VL-2B's
configuration (28 layers of width 1536, a 32-block vision tower of width 1280, 448² px images: 256
visual tokens) with random weights: every kernel, shape and batch is the real model's, the answers
are not. Greedy decoding of random weights rarely ends early, so every question generates
`max_new_tokens` tokens: the figures are an upper bound on the time per question.

    python benchmarks/gpu_setup.py --out /tmp/gpu   # writes /tmp/gpu/qwen2vl_2b and /tmp/gpu/vqav2_val.jsonl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vlmflow.data.cache import cache_dataset
from vlmflow.synth.corpus import corpus_lines
from vlmflow.synth.vqav2 import write_vqav2
from vlmflow.zoo.build import build_checkpoint

# Qwen2-VL-2B-Instruct's config.json (vision and text), but for the vocabulary (trained on the corpus)
QWEN2_VL_2B = {
    "family": "qwen2_vl",
    "seed": 0,
    "vocab_size": 4096,
    "image_size": 448,
    "vision": {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4},
    "text": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=250, help="four questions each")
    args = parser.parse_args()
    start = time.perf_counter()
    raw = args.out / "raw"
    write_vqav2(raw, "val", args.images, seed=0, image_size=448)
    spec = {
        "format": "vqav2",
        "questions": str(raw / "v2_OpenEnded_mscoco_val2014_questions.json"),
        "annotations": str(raw / "v2_mscoco_val2014_annotations.json"),
        "images": str(raw / "val2014"),
    }
    n = cache_dataset("vqav2_val", spec, args.out / "vqav2_val.jsonl", None, other_specs={})
    build_checkpoint(QWEN2_VL_2B, corpus_lines(), args.out / "qwen2vl_2b")
    print(f"{n} questions and a Qwen2-VL-2B-sized checkpoint in {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
