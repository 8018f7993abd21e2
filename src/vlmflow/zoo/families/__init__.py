"""One builder module per model family: its tokenizer, processor, chat template and tiny config.

Each module exposes `build(spec, corpus_lines) -> (model, processor)`; `vlmflow.zoo.build` seeds,
saves and registers them.
"""
