"""Convert a remote-code InternVL2 / InternVL2.5 chat checkpoint to the transformers-native InternVL format.

OpenGVLab's `internvl_chat` folders (InternViT, an MLP projector, a Qwen2, InternLM2 or Llama LLM) need
their own Python code. Here the folder is read as data (config.json, safetensors, tokenizer files); none
of its code runs. The weights are renamed and split as transformers' `convert_internvl_weights_to_hf.py`
does, to `InternVLForConditionalGeneration`'s names, and saved beside an `InternVLProcessor`, so every
stage runs the model through the native InternVL adapter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from safetensors.torch import load_file
from tokenizers import AddedToken, Tokenizer
from transformers import (
    GenerationConfig,
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    PreTrainedTokenizerFast,
    Qwen2Tokenizer,
)
from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from vlmflow.core.io import atomic_directory, read_json, write_json
from vlmflow.zoo.families.internvl import INTERNVL_CHAT_TEMPLATE

# Weight renames of transformers' convert_internvl_weights_to_hf.py, in its order, to 5.24's names.
VISION_RENAMES = (
    (r"^vision_model\.", "model.vision_tower."),
    (r"layers", "layer"),
    (r"class_embedding", "cls_token"),
    (r"position_embedding", "position_embeddings"),
    (r"patch_embedding", "patch_embeddings.projection"),
    (r"ls(\d+)", r"lambda_\1"),
    (r"attn\.proj", "attention.projection_layer"),
    (r"attn", "attention"),
    (r"norm1", "layernorm_before"),
    (r"norm2", "layernorm_after"),
)
PROJECTOR_RENAMES = (
    (r"^mlp1\.0\.", "model.multi_modal_projector.layer_norm."),
    (r"^mlp1\.1\.", "model.multi_modal_projector.linear_1."),
    (r"^mlp1\.3\.", "model.multi_modal_projector.linear_2."),
)
HF_TEXT_RENAMES = ((r"^language_model\.model\.", "model.language_model."), (r"^language_model\.lm_head\.", "lm_head."))
INTERNLM2_RENAMES = (
    (r"^language_model\.model\.", "model.language_model."),
    (r"tok_embeddings", "embed_tokens"),
    (r"attention\.wo", "self_attn.o_proj"),
    (r"feed_forward\.w1", "mlp.gate_proj"),
    (r"feed_forward\.w2", "mlp.down_proj"),
    (r"feed_forward\.w3", "mlp.up_proj"),
    (r"attention_norm", "input_layernorm"),
    (r"ffn_norm", "post_attention_layernorm"),
    (r"^language_model\.output\.", "lm_head."),
)

# llm_config keys that shape the language model (the rest is training or generation state)
TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
TEXT_KEYS += ("num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "initializer_range")
TEXT_KEYS += ("attention_dropout", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")
QWEN2_KEYS = ("use_sliding_window", "sliding_window", "max_window_layers", "layer_types")
LLAMA_KEYS = ("attention_bias", "mlp_bias", "head_dim")
# llm_config architecture -> (native text model_type, its extra keys, the weight renames)
TEXT_MODELS = {
    "Qwen2ForCausalLM": ("qwen2", QWEN2_KEYS, HF_TEXT_RENAMES),
    "LlamaForCausalLM": ("llama", LLAMA_KEYS, HF_TEXT_RENAMES),
    "InternLM2ForCausalLM": ("llama", (), INTERNLM2_RENAMES),
}
# InternViT config keys that keep their name, and those the native vision config renames
VISION_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act")
VISION_KEYS += ("layer_norm_eps", "norm_type", "image_size", "patch_size", "num_channels", "attention_dropout")
VISION_RENAMED_KEYS = {"qkv_bias": "attention_bias", "qk_normalization": "use_qk_norm"}
# The conversation templates that are ChatML (<|im_start|>role ... <|im_end|>), as the native template
CHATML_TEMPLATES = ("Hermes-2", "internlm2-chat", "internvl2_5")
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
END_OF_TURN = "<|im_end|>"
ADDED_TOKEN_FLAGS = ("special", "normalized", "lstrip", "rstrip", "single_word")
IMAGENET = {"image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD}  # InternVL's normalisation
Weights = dict[str, torch.Tensor]


def unsupported(path: Path, key: str, value: Any, supported: str) -> ValueError:
    return ValueError(f"{path}: {key} is {value!r}; the native InternVL format supports {supported}")


def check_chat_config(chat: dict[str, Any], path: Path) -> str:
    """Fail, naming the key, on anything the native format cannot express; returns the LLM architecture."""
    if chat.get("model_type") != "internvl_chat":
        raise unsupported(path, "model_type", chat.get("model_type"), "'internvl_chat' (an InternVL chat checkpoint)")
    architecture = (chat["llm_config"].get("architectures") or [None])[0]
    if architecture not in TEXT_MODELS:
        raise unsupported(path, "llm_config.architectures", architecture, ", ".join(TEXT_MODELS))
    if chat["llm_config"].get("bias"):
        raise unsupported(path, "llm_config.bias", True, "InternLM2 without attention biases")
    if chat.get("ps_version", "v1") != "v2":
        raise unsupported(path, "ps_version", chat.get("ps_version", "v1"), "the v2 pixel shuffle")
    layers = chat["vision_config"]["num_hidden_layers"]
    select = chat.get("select_layer", -1)
    if type(select) is not int or not -layers - 1 <= select <= layers:
        raise unsupported(path, "select_layer", select, f"one layer index in [{-layers - 1}, {layers}]")
    if chat.get("template") not in CHATML_TEMPLATES:
        raise unsupported(path, "template", chat.get("template"), f"the ChatML templates {', '.join(CHATML_TEMPLATES)}")
    if not chat.get("use_thumbnail", False):
        raise unsupported(path, "use_thumbnail", chat.get("use_thumbnail"), "tiles with a thumbnail (true)")
    size = chat["vision_config"]["image_size"]
    if chat.get("force_image_size") not in (None, size):
        raise unsupported(path, "force_image_size", chat["force_image_size"], f"the vision image_size ({size})")
    return architecture


def native_config(chat: dict[str, Any], architecture: str, image_token_id: int) -> InternVLConfig:
    """The `InternVLConfig` of a chat config.json: InternViT as InternVLVision, the LLM as Qwen2 or Llama."""
    model_type, extra_keys, _ = TEXT_MODELS[architecture]
    llm, vit = chat["llm_config"], chat["vision_config"]
    text = {key: llm[key] for key in TEXT_KEYS + extra_keys if key in llm}
    scaling = dict(llm.get("rope_scaling") or {})  # {"type": "dynamic", "factor": 2.0} in InternLM2.5 and Qwen2.5
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))
    text["rope_parameters"] = {"rope_type": rope_type, **scaling, "rope_theta": llm.get("rope_theta", 10000.0)}
    vision = {key: vit[key] for key in VISION_KEYS if key in vit}
    vision |= {new: vit[old] for old, new in VISION_RENAMED_KEYS.items() if old in vit}
    ratio = chat["downsample_ratio"]
    return InternVLConfig(
        vision_config={**vision, "use_absolute_position_embeddings": True},
        text_config={"model_type": model_type, **text},
        image_token_id=image_token_id,
        image_seq_length=int((vit["image_size"] // vit["patch_size"]) ** 2 * ratio**2),
        downsample_ratio=ratio,
        vision_feature_layer=chat.get("select_layer", -1),
        vision_feature_select_strategy="default",  # InternVL drops the CLS token
        tie_word_embeddings=llm.get("tie_word_embeddings", False),
    )


def chat_weights(source: Path) -> Weights:
    """Every tensor of model.safetensors, or of the shards model.safetensors.index.json lists."""
    index = source / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(read_json(index)["weight_map"].values()))
    elif (source / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickled = sorted(p.name for p in source.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        found = f" (it has {', '.join(pickled)})" if pickled else ""
        raise ValueError(
            f"{source}: no model.safetensors or model.safetensors.index.json{found}; only safetensors weights "
            "are read (pickled .bin / .pt files can run code when loaded)"
        )
    state: Weights = {}
    for name in files:
        state.update(load_file(source / name))
    return state


def split_wqkv(wqkv: torch.Tensor, heads: int, kv_heads: int) -> list[torch.Tensor]:
    """InternLM2's fused projection, laid out "(h gs d) z" (per key-value head: its query heads, then
    its key and its value), as separate q, k and v weights."""
    groups = heads // kv_heads
    grouped = wqkv.reshape(kv_heads, groups + 2, -1, wqkv.shape[-1])
    return [part.reshape(-1, wqkv.shape[-1]) for part in (grouped[:, :groups], grouped[:, -2], grouped[:, -1])]


def native_weights(state: Weights, config: InternVLConfig, architecture: str) -> Weights:
    """The chat checkpoint's tensors under the names of `InternVLForConditionalGeneration`."""
    text_renames = TEXT_MODELS[architecture][2]
    text = config.text_config
    native = {}
    for key, tensor in state.items():
        if key.startswith("vision_model."):
            renames = VISION_RENAMES
        elif key.startswith("language_model."):
            renames = text_renames
        else:
            renames = PROJECTOR_RENAMES
        name = key
        for pattern, replacement in renames:
            name = re.sub(pattern, replacement, name)
        if ".attention.qkv." in name:  # InternViT: q, k and v stacked
            parts, fused, split = tensor.chunk(3), "attention.qkv", "attention.{}_proj"
        elif ".attention.wqkv." in name:
            parts = split_wqkv(tensor, text.num_attention_heads, text.num_key_value_heads)
            fused, split = "attention.wqkv", "self_attn.{}_proj"
        else:
            native[name] = tensor
            continue
        for letter, part in zip("qkv", parts):
            native[name.replace(fused, split.format(letter))] = part.contiguous()
    embeddings = "model.language_model.embed_tokens.weight"
    if config.tie_word_embeddings and embeddings in native:  # a tied head is saved once
        native.setdefault("lm_head.weight", native[embeddings])
    return native


def sentencepiece_tokenizer(path: Path) -> Tokenizer:
    """InternLM2's tokenizer.model as a `tokenizers` BPE that encodes each stretch between added tokens
    as `SentencePieceProcessor.encode` does (InternLM2Tokenizer's way)."""
    proto = SentencePieceExtractor(str(path)).proto  # needs sentencepiece and protobuf: vlmflow[internvl]
    if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
        raise unsupported(path, "trainer_spec.model_type", proto.trainer_spec.model_type, "BPE (InternLM2's)")
    vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    return SpmConverter.build_tokenizer_from_spm_proto(proto=proto, vocab=vocab, legacy=True)


def chat_tokenizer(source: Path) -> PreTrainedTokenizerFast:
    """The checkpoint's tokenizer as a fast one, added tokens at their original ids, ending turns at <|im_end|>."""
    settings: dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            settings |= read_json(source / name)
    options = {key: settings[key] for key in ("add_bos_token", "add_eos_token", "model_max_length") if key in settings}
    if (source / "tokenizer.json").is_file():
        backend = Tokenizer.from_file(str(source / "tokenizer.json"))
    elif (source / "tokenizer.model").is_file():
        backend = sentencepiece_tokenizer(source / "tokenizer.model")
        options.setdefault("add_bos_token", True)  # InternLM2Tokenizer's default
    elif (source / "vocab.json").is_file() and (source / "merges.txt").is_file():
        lines = (source / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        backend = Qwen2Tokenizer(vocab=read_json(source / "vocab.json"), merges=merges).backend_tokenizer
    else:
        raise ValueError(f"{source}: no tokenizer.json, tokenizer.model or vocab.json + merges.txt")
    path = source / "tokenizer_config.json"
    for token_id, token in sorted(settings.get("added_tokens_decoder", {}).items(), key=lambda item: int(item[0])):
        backend.add_tokens([AddedToken(token["content"], **{k: token[k] for k in ADDED_TOKEN_FLAGS if k in token})])
        if (got := backend.token_to_id(token["content"])) != int(token_id):
            raise ValueError(f"{path}: added_tokens_decoder puts {token['content']!r} at {token_id}, not at {got}")
    for token in (*IMAGE_TOKENS.values(), END_OF_TURN):
        if backend.token_to_id(token) is None:
            raise ValueError(f"{path}: the tokenizer has no {token!r} token (added_tokens_decoder)")
    # each a string or an AddedToken's dict
    named = {key: settings.get(key) for key in ("bos_token", "unk_token", "pad_token")}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **{key: value["content"] if isinstance(value, dict) else value for key, value in named.items()},
        eos_token=END_OF_TURN,
        # <video> is only a placeholder the processor expands to image tokens (added if absent)
        extra_special_tokens={**IMAGE_TOKENS, "video_token": "<video>"},
        **options,
    )


def chat_processor(chat: dict[str, Any], tokenizer: PreTrainedTokenizerFast, seq_length: int) -> InternVLProcessor:
    """ImageNet-normalised tiles of image_size px, min_ to max_dynamic_patch of them and a thumbnail (InternVL's
    dynamic_preprocess), and the ChatML template of transformers' conversion."""
    size = {"height": chat["vision_config"]["image_size"], "width": chat["vision_config"]["image_size"]}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size=size,
            crop_to_patches=True,
            min_patches=chat.get("min_dynamic_patch", 1),
            max_patches=chat.get("max_dynamic_patch", 12),
            **IMAGENET,
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size, **IMAGENET),
        image_seq_length=seq_length,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )


def convert_internvl_chat(source: str | Path, out_dir: str | Path) -> None:
    """Write the native InternVL checkpoint of the chat checkpoint folder `source` to `out_dir` (atomically)."""
    source = Path(source)
    path = source / "config.json"
    chat = json.loads(path.read_text(encoding="utf-8"))
    architecture = check_chat_config(chat, path)
    tokenizer = chat_tokenizer(source)
    config = native_config(chat, architecture, tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]))
    state = native_weights(chat_weights(source), config, architecture)
    with init_empty_weights():  # the tensors read are the weights: nothing is initialised or cast
        model = InternVLForConditionalGeneration(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: its weights do not fit InternVLForConditionalGeneration (names after conversion): "
            f"missing {missing}, unexpected {unexpected}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TURN), pad_token_id=tokenizer.pad_token_id
    )
    processor = chat_processor(chat, tokenizer, config.image_seq_length)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(tmp / "vlmflow_converted.json", {"source": str(source), "format": "internvl_chat"})
