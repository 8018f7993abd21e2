"""The settings that determine a run's outputs, kept free of heavy imports.

The workflow reads their defaults when it parses config.yaml (so `snakemake -n` stays fast), and
the stages take them as frozen dataclasses, so every field is part of a resume fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_PROMPT = "{question}\nAnswer the question using a single word or phrase."


@dataclass(frozen=True)
class GenerationSettings:
    """Everything besides model and data that determines the predictions."""

    batch_size: int = 8
    max_new_tokens: int = 10
    prompt: str = DEFAULT_PROMPT  # "{question}" is replaced by the record's question
    system_prompt: str | None = None
    # A raw prompt ("{question}" replaced) instead of the chat template, for processors without
    # one (PaliGemma: "answer en {question}"); the processor adds its image tokens itself.
    prompt_template: str | None = None
    chunk_batches: int = 4  # batches per durable flush
    mode: str = "normal"  # answer mode: normal | prompt | two_pass | explicit_cot
    decoding: str = "free"  # free | constrained (to the candidates) | likelihood (rank them)
    reasoning_tokens: int = 64  # max new tokens of a rationale or chain of thought


@dataclass(frozen=True)
class TrainSettings:
    """Everything besides model and data that determines the training curve."""

    steps: int = 400  # optimizer steps
    batch_size: int = 16  # samples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 2e-4
    lr_projector: float | None = None  # defaults to lr
    lr_vision: float | None = None  # defaults to lr
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    seed: int = 0
    mode: str = "lora"  # "lora" or "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    train_projector: bool = False  # LoRA mode: also train the projector (fully)
    train_vision: bool = False  # LoRA mode: also put LoRA on the vision tower
    freeze_vision: bool = False  # full mode: keep the vision tower fixed (the projector still trains)
    checkpoint_every: int = 50

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum


@dataclass(frozen=True)
class PruningSettings:
    """How visual tokens are ranked and dropped in a guided-pruning run (SGL, FastV, random)."""

    method: str = "guided"  # guided (the guide's attention) | fastv (own last-token attention) | random
    keep_ratios: tuple[float, ...] = (1.0, 0.4, 0.09)  # share of visual tokens kept from layer K on
    prune_layer: float = 0.0  # K = int(num_layers * prune_layer); FastV ranks by layer K-1, so needs K >= 1
    consistency_token_ratio: float = 0.05  # visual tokens the guide re-scores its answer with
    guide_layers: tuple[int, ...] | None = None  # guide layers whose attention counts (None: all)
    guide_rows: str = "prompt_and_generated"  # | prompt | generated | last_prompt
    guide_text_mode: str = "none"  # | short_rationale: the guide's rationale goes into the decode prompt
    guide_reasoning_mode: str = "none"  # | short_cot: the guide reasons briefly; only its attention is used
    shared_vision: str = "auto"  # auto (when the towers match) | always (else an error) | never
    seed: int = 0  # of the random ranking


def halved_micro_batch(settings: TrainSettings) -> TrainSettings:
    """The settings of a training job that ran out of memory: the largest micro-batch that divides
    the current one and is at most half of it, with the accumulation raised to match, so every
    optimizer step still sees the same samples (and the run's resume fingerprint stays the same)."""
    batch = max(d for d in range(1, settings.batch_size // 2 + 1) if settings.batch_size % d == 0)
    return replace(settings, batch_size=batch, grad_accum=settings.grad_accum * settings.batch_size // batch)


@dataclass(frozen=True)
class FoveatedSettings:
    """One foveated-VLM run (seed 001): architecture, what trains and how fast, loss, data, budget.

    The seed's defaults: connector lr 1e-4, DINOv2 and LM 1e-5 (F3 = LR1), all-token loss, a
    default video / image / text mix; a run of the sweep changes a few of these."""

    architecture: str = "foveated"  # | multi_token (the seed's B1)
    deep_query: bool = True  # False: the query attends at the encoder's last layer only (A1)
    visual_scale: float = 0.14
    grid: int = 4  # multi_token: grid x grid pooled patch tokens per frame
    mode: str = "coarse_fine"  # training passes | coarse_only (A6: the static query only)
    freeze: tuple[str, ...] = ()  # groups kept fixed: vision, language (the connector always trains)
    lr_connector: float = 1e-4
    lr_vision: float = 1e-5
    lr_language: float = 1e-5
    loss: str = "all_tokens"  # | answer_only
    lambda_coarse: float = 0.0  # weight of the auxiliary coarse-pass loss
    budget: int = 1_000_000  # training samples, the same ones (for one mix) in every run
    batch_size: int = 32
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.01
    mix: tuple[tuple[str, float], ...] = (("video", 0.45), ("image", 0.40), ("text", 0.15))
    replicate_image_frames: int = 1  # frames an image becomes (A8a: 1, A8b: 16)
    max_length: int = 128  # text tokens per sample
    eval_every: int = 100  # optimizer steps between evaluations on the fixed val set
    val_samples: int | None = None  # size of the fixed val set (None: the whole val file)
    attention_samples: int = 10  # fixed val samples whose attention maps are saved at each eval
    checkpoint_every: int = 50
    seed: int = 0

    @property
    def steps(self) -> int:
        return -(-self.budget // self.batch_size)

    @property
    def lrs(self) -> dict[str, float]:
        return {
            "connector": self.lr_connector,
            "vision": self.lr_vision,
            "language": self.lr_language,
        }


@dataclass(frozen=True)
class ImageSettings:
    """How every image of an experiment is sampled (Z-Image-Turbo: no CFG, few steps)."""

    height: int = 64
    width: int = 64
    steps: int = 8
    guidance_scale: float = 0.0
    negative_prompt: str = ""  # the reference encoder's embeddings of it, when guidance_scale > 0
    seed: int = 0


# The parts of the VL-conditioning study's pipeline that pretraining trains, in order, and the
# trained parts each one learns from (the transformer from the text encoder's embeddings and the
# VAE's latents; the VLM under the text encoder as its language model).
ZIMAGE_PARTS = ("text_encoder", "vae", "transformer", "vlm")
ZIMAGE_PART_NEEDS: dict[str, tuple[str, ...]] = {
    "text_encoder": (),
    "vae": (),
    "transformer": ("text_encoder", "vae"),
    "vlm": ("text_encoder",),
}


@dataclass(frozen=True)
class ZImagePartSettings:
    """How one part of the tiny Z-Image pipeline pretrains (`pretrain.conditioning.<name>.<part>`)."""

    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    checkpoint_every: int = 250
    seed: int = 0
    kl_weight: float = 1e-6  # the VAE's KL term (the posterior's summed KL, per picture)
    language_lr: float | None = None  # the VLM's language model: None keeps it the text encoder (frozen)
