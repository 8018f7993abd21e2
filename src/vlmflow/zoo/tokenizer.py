"""Byte-level BPE tokenizers trained offline on the synthetic corpus.

Byte-level BPE encodes any text (a user's prompt template included) and decodes it back exactly,
like the GPT-2 / Qwen2 tokenizers the real checkpoints ship, but with a vocabulary small enough for
a model of a few hundred thousand parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers


def train_bpe(
    lines: Iterable[str],
    vocab_size: int,
    special_tokens: list[str],
    bos_token: str | None = None,
) -> Tokenizer:
    """Train a byte-level BPE on `lines`; special tokens take the first ids, in order.

    `bos_token`, when given, is prepended to every encoded text (Llama-style tokenizers do this).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    if bos_token is not None:
        bos_id = tokenizer.token_to_id(bos_token)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B", special_tokens=[(bos_token, bos_id)]
        )
    return tokenizer
