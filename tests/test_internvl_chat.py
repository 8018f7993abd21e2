"""InternVL2 chat checkpoints: a remote-code `internvl_chat` folder converted to the native InternVL
format without running its code, checked tensor for tensor and answer for answer against the native
model its weights were written from (a Qwen2 and an InternLM2 language model)."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from conftest import CORPUS, FAMILY_SPECS, make_records
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
)

from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import encode_batch, render_prompt
from vlmflow.core.settings import GenerationSettings
from vlmflow.vqa.inference import generate_batch
from vlmflow.zoo.build import build_checkpoint
from vlmflow.zoo.internvl_chat import convert_internvl_chat

SETTINGS = GenerationSettings(batch_size=3, max_new_tokens=4)

# Native name -> the original one, after OpenGVLab's modeling_intern_vit.py (InternViT),
# modeling_internvl_chat.py (mlp1) and modeling_internlm2.py; q/k/v are packed separately.
VISION_NAMES = (
    ("model.vision_tower.", "vision_model."),
    ("encoder.layer.", "encoder.layers."),
    ("embeddings.cls_token", "embeddings.class_embedding"),
    ("position_embeddings", "position_embedding"),
    ("patch_embeddings.projection", "patch_embedding"),
    ("lambda_", "ls"),
    ("attention.projection_layer", "attn.proj"),
    ("layernorm_before", "norm1"),
    ("layernorm_after", "norm2"),
    ("attention.", "attn."),
    ("model.multi_modal_projector.layer_norm.", "mlp1.0."),
    ("model.multi_modal_projector.linear_1.", "mlp1.1."),
    ("model.multi_modal_projector.linear_2.", "mlp1.3."),
)
QWEN2_NAMES = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."))
INTERNLM2_NAMES = (
    ("model.language_model.", "language_model.model."),
    ("embed_tokens", "tok_embeddings"),
    ("self_attn.o_proj", "attention.wo"),
    ("mlp.gate_proj", "feed_forward.w1"),
    ("mlp.down_proj", "feed_forward.w2"),
    ("mlp.up_proj", "feed_forward.w3"),
    ("input_layernorm", "attention_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("lm_head.", "language_model.output."),
)
REMOTE_CODE = 'raise RuntimeError("the checkpoint\'s own code ran")\n'
# InternLM2's sentencepiece pieces are its base vocabulary; InternVL adds the image tokens after it
SP_VOCAB = 400
IMAGE_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>"]


def pack_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """InternLM2's wqkv: per key-value head, its query heads, then its key, then its value."""
    columns = q.shape[-1]
    per_head = [t.reshape(kv_heads, -1, k.shape[0] // kv_heads, columns) for t in (q, k, v)]
    return torch.cat(per_head, dim=1).reshape(-1, columns)


def chat_weights(model: InternVLForConditionalGeneration, internlm2: bool) -> dict[str, torch.Tensor]:
    """The native model's tensors under the chat checkpoint's names (a tied head stored once)."""
    state = model.state_dict()
    kv_heads = model.config.text_config.num_key_value_heads
    names = VISION_NAMES + (INTERNLM2_NAMES if internlm2 else QWEN2_NAMES)
    out = {}
    for key, tensor in state.items():
        if re.search(r"\.[kv]_proj\.", key) or (key == "lm_head.weight" and model.config.tie_word_embeddings):
            continue
        name = key
        for new, old in names:
            name = name.replace(new, old)
        if ".q_proj." in key:
            q, k, v = (state[key.replace("q_proj", letter)] for letter in ("q_proj", "k_proj", "v_proj"))
            if name.startswith("vision_model."):
                name, tensor = name.replace("attn.q_proj", "attn.qkv"), torch.cat([q, k, v])
            elif internlm2:
                name, tensor = name.replace("self_attn.q_proj", "attention.wqkv"), pack_wqkv(q, k, v, kv_heads)
            else:
                out |= {name.replace("q_proj", f"{x}_proj"): state[key.replace("q_proj", f"{x}_proj")] for x in "kv"}
        out[name] = tensor
    return {key: tensor.clone().contiguous() for key, tensor in out.items()}


def chat_config(model: InternVLForConditionalGeneration, architecture: str, template: str) -> dict:
    """config.json as InternVLChatConfig.to_dict() writes it, training and generation keys included."""
    text, vision = model.config.text_config, model.config.vision_config
    llm = {key: getattr(text, key) for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")}
    llm |= {key: getattr(text, key) for key in ("num_attention_heads", "num_key_value_heads", "rms_norm_eps")}
    rope = text.rope_parameters
    if rope["rope_type"] != "default":
        llm["rope_scaling"] = {"type": rope["rope_type"], "factor": rope["factor"]}
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig"},
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "force_image_size": vision.image_size[0],
        "select_layer": -1,
        "ps_version": "v2",
        "template": template,
        "dynamic_image_size": True,
        "use_thumbnail": True,
        "min_dynamic_patch": 1,
        "max_dynamic_patch": 6,
        "llm_config": {
            **llm,
            "architectures": [architecture],
            "max_position_embeddings": 4096,
            "rope_theta": rope["rope_theta"],
            "tie_word_embeddings": model.config.tie_word_embeddings,
            "bias": False,
            "attn_implementation": "flash_attention_2",
            "temperature": 1.0,
        },
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "image_size": vision.image_size[0],
            "patch_size": vision.patch_size[0],
            "qkv_bias": True,
            "qk_normalization": False,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "drop_path_rate": 0.1,
            "initializer_factor": 1.0,
            "use_flash_attn": True,
        },
    }


def write_chat(folder: Path, config: dict, weights: dict[str, torch.Tensor], shards: int = 1) -> None:
    """A chat checkpoint folder, with code files that fail if anything runs them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("modeling_internvl_chat.py", "configuration_internvl_chat.py", "tokenization_internlm2.py"):
        (folder / name).write_text(REMOTE_CODE)
    if shards == 1:
        save_file(weights, folder / "model.safetensors")
        return
    keys, weight_map = sorted(weights), {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({key: weights[key] for key in keys[i::shards]}, folder / name)
        weight_map |= {key: name for key in keys[i::shards]}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def added(tokens: dict[int, str]) -> dict[str, dict]:
    flags = {"special": True, "normalized": False, "lstrip": False, "rstrip": False, "single_word": False}
    return {str(i): {"content": content, **flags} for i, content in tokens.items()}


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    """InternVL2-1B's layout (Qwen2, tied embeddings, bf16 in two shards) from the zoo's native InternVL."""
    root = tmp_path_factory.mktemp("internvl_qwen2")
    build_checkpoint(FAMILY_SPECS["internvl"], CORPUS, root / "zoo")
    native = AutoModelForImageTextToText.from_pretrained(root / "zoo").to(torch.bfloat16)
    native.save_pretrained(root / "native")
    AutoProcessor.from_pretrained(root / "zoo").save_pretrained(root / "native")
    config = chat_config(native, "Qwen2ForCausalLM", "Hermes-2")
    write_chat(root / "chat", config, chat_weights(native, internlm2=False), shards=2)
    shutil.copy(root / "zoo" / "tokenizer.json", root / "chat")
    tokens = {t["id"]: t["content"] for t in json.loads((root / "zoo" / "tokenizer.json").read_text())["added_tokens"]}
    tokenizer_config = {"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added(tokens)}
    tokenizer_config |= {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "model_max_length": 8192}
    (root / "chat" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    convert_internvl_chat(root / "chat", root / "converted")
    return root


def train_sentencepiece(lines: list[str]) -> bytes:
    """A tiny BPE like InternLM2's: byte fallback, no dummy prefix, the ChatML markers as pieces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=SP_VOCAB,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        user_defined_symbols=["<|im_start|>", "<|im_end|>"],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return model.getvalue()


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory):
    """InternVL2-2B's layout (InternLM2 with fused wqkv, a sentencepiece tokenizer) from a native
    InternVL with a Llama text model; the reference gets the converted processor."""
    root = tmp_path_factory.mktemp("internvl_internlm2")
    build_checkpoint(FAMILY_SPECS["internvl"], CORPUS, root / "zoo")
    (root / "chat").mkdir()
    (root / "chat" / "tokenizer.model").write_bytes(train_sentencepiece(CORPUS * 4 + ["system user assistant"] * 4))
    tokens = {0: "<unk>", 1: "<s>", 2: "</s>", 3: "<|im_start|>", 4: "<|im_end|>"}
    tokens |= {SP_VOCAB + i: token for i, token in enumerate(IMAGE_TOKENS)}
    tokenizer_config = {
        "tokenizer_class": "InternLM2Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "added_tokens_decoder": added(tokens),
        **{"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"},
    }
    text = {"vocab_size": SP_VOCAB + len(IMAGE_TOKENS), "hidden_size": 32, "intermediate_size": 64}
    text |= {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5}
    rope = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6}  # InternLM2.5-7B's
    torch.manual_seed(0)
    native = InternVLForConditionalGeneration(
        InternVLConfig(
            vision_config=AutoConfig.from_pretrained(root / "zoo").vision_config,
            text_config={"model_type": "llama", **text, "max_position_embeddings": 4096, "rope_parameters": rope},
            image_token_id=SP_VOCAB + 2,
            image_seq_length=4,
            tie_word_embeddings=False,
        )
    )
    config = chat_config(native, "InternLM2ForCausalLM", "internlm2-chat")
    write_chat(root / "chat", config, chat_weights(native, internlm2=True))
    (root / "chat" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    convert_internvl_chat(root / "chat", root / "converted")
    native.generation_config = GenerationConfig.from_pretrained(root / "converted")
    native.save_pretrained(root / "native")
    AutoProcessor.from_pretrained(root / "converted").save_pretrained(root / "native")
    return root


@pytest.mark.parametrize("layout", ["qwen2", "internlm2"])
def test_converted_checkpoint_is_the_native_model(layout, request, tmp_path):
    root = request.getfixturevalue(layout)
    converted = AutoModelForImageTextToText.from_pretrained(root / "converted", local_files_only=True)
    native = AutoModelForImageTextToText.from_pretrained(root / "native", local_files_only=True)
    assert converted.state_dict().keys() == native.state_dict().keys()
    assert converted.config.text_config.rope_parameters == native.config.text_config.rope_parameters
    for name, tensor in native.state_dict().items():
        assert converted.state_dict()[name].dtype == tensor.dtype, name
        assert torch.equal(converted.state_dict()[name], tensor), name
    assert not list((root / "converted").glob("*.py"))
    assert "auto_map" not in json.loads((root / "converted" / "config.json").read_text())
    assert json.loads((root / "converted" / "vlmflow_converted.json").read_text())["source"] == str(root / "chat")

    records = make_records(tmp_path, 6)
    answers, logits = {}, {}
    for name in ("native", "converted"):
        model, processor = load_vlm(root / name, device="cpu")
        answers[name] = [generate_batch(model, processor, records[i : i + 3], SETTINGS) for i in (0, 3)]
        with torch.no_grad():
            logits[name] = model(**encode_batch(model, processor, records[:3], SETTINGS)).logits
    assert answers["converted"] == answers["native"]
    assert torch.equal(logits["converted"], logits["native"])


@pytest.fixture
def chat_copy(qwen2, tmp_path):
    shutil.copytree(qwen2 / "chat", tmp_path / "chat")
    return tmp_path / "chat"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("architectures", ["Phi3ForCausalLM"], "llm_config.architectures is 'Phi3ForCausalLM'"),
        ("ps_version", "v1", "ps_version is 'v1'"),
        ("select_layer", [-1, -4], "select_layer is [-1, -4]"),
        ("template", "phi3-chat", "template is 'phi3-chat'"),
    ],
)
def test_what_the_native_format_cannot_express_is_named(chat_copy, key, value, message):
    config = json.loads((chat_copy / "config.json").read_text())
    (config["llm_config"] if key == "architectures" else config)[key] = value
    (chat_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=re.escape(f"{chat_copy / 'config.json'}: {message}")):
        convert_internvl_chat(chat_copy, chat_copy.parent / "out")
    assert not (chat_copy.parent / "out").exists()


def test_pickled_weights_are_never_read(chat_copy):
    for path in chat_copy.glob("model*.safetensors*"):
        path.unlink()
    (chat_copy / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"no model\.safetensors .*\(it has pytorch_model\.bin\); only safetensors"):
        convert_internvl_chat(chat_copy, chat_copy.parent / "out")


def test_missing_and_unexpected_weights_are_listed(chat_copy):
    weights = {}
    for path in chat_copy.glob("model-*.safetensors"):
        weights |= load_file(path)
        path.unlink()
    (chat_copy / "model.safetensors.index.json").unlink()
    weights["mlp1.4.weight"] = weights.pop("mlp1.3.bias")
    save_file(weights, chat_copy / "model.safetensors")
    expected = "missing ['model.multi_modal_projector.linear_2.bias'], unexpected ['mlp1.4.weight']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        convert_internvl_chat(chat_copy, chat_copy.parent / "out")


def test_converted_tokenizer_keeps_the_original_ids(qwen2, internlm2):
    zoo = AutoProcessor.from_pretrained(qwen2 / "zoo").tokenizer
    assert AutoProcessor.from_pretrained(qwen2 / "converted").tokenizer.get_vocab() == zoo.get_vocab()
    processor = AutoProcessor.from_pretrained(internlm2 / "converted", local_files_only=True)
    tokenizer = processor.tokenizer
    assert tokenizer.eos_token == "<|im_end|>"
    assert [tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS] == [SP_VOCAB, SP_VOCAB + 1, SP_VOCAB + 2]
    assert processor.image_token_id == AutoConfig.from_pretrained(internlm2 / "converted").image_token_id

    # InternLM2Tokenizer: <s>, then SentencePiece on each stretch between added tokens
    sp = spm.SentencePieceProcessor(model_file=str(internlm2 / "chat" / "tokenizer.model"))
    added_tokens = ["<|im_start|>", "<|im_end|>", *IMAGE_TOKENS]
    prompt = render_prompt(processor, "What color is the square?", SETTINGS)
    for text in [prompt, " two  spaces\nand a newline 123", "naïve <img></img> yes<|im_end|>"]:
        pieces = re.split(f"({'|'.join(map(re.escape, added_tokens))})", text)
        ids = [tokenizer.convert_tokens_to_ids(p) if p in added_tokens else sp.encode(p) for p in pieces if p]
        expected = [1] + [i for part in ids for i in ([part] if isinstance(part, int) else part)]
        assert tokenizer(text).input_ids == expected, text


def test_wqkv_split_follows_internlm2_attention(internlm2):
    """The q / k / v heads InternLM2's attention reads from its fused output are the converted projections'."""
    model = AutoModelForImageTextToText.from_pretrained(internlm2 / "converted")
    layer = model.model.language_model.layers[0].self_attn
    heads, kv_heads, d = 4, 2, 8
    wqkv = load_file(internlm2 / "chat" / "model.safetensors")["language_model.model.layers.0.attention.wqkv.weight"]
    x = torch.randn(1, 5, 32)
    qkv = (x @ wqkv.T).reshape(1, 5, kv_heads, heads // kv_heads + 2, d)  # "b q (h gs d) -> b q h gs d"
    query, key, value = qkv[..., :-2, :].reshape(1, 5, heads, d), qkv[..., -2, :], qkv[..., -1, :]
    assert torch.allclose(layer.q_proj(x).reshape(1, 5, heads, d), query, atol=1e-6)
    assert torch.allclose(layer.k_proj(x).reshape(1, 5, kv_heads, d), key, atol=1e-6)
    assert torch.allclose(layer.v_proj(x).reshape(1, 5, kv_heads, d), value, atol=1e-6)


def test_qwen2_vocab_and_merges_files_are_read(chat_copy, qwen2):
    """InternVL2-1B ships Qwen2's vocab.json + merges.txt and no tokenizer.json."""
    model = json.loads((chat_copy / "tokenizer.json").read_text())["model"]
    (chat_copy / "tokenizer.json").unlink()
    (chat_copy / "vocab.json").write_text(json.dumps(model["vocab"]))
    (chat_copy / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in model["merges"]))
    convert_internvl_chat(chat_copy, chat_copy.parent / "out")
    converted = AutoProcessor.from_pretrained(chat_copy.parent / "out").tokenizer
    zoo = AutoProcessor.from_pretrained(qwen2 / "zoo")
    assert converted.get_vocab() == zoo.tokenizer.get_vocab()
    prompt = render_prompt(zoo, "What color is the square?", SETTINGS)
    assert converted(prompt).input_ids == zoo.tokenizer(prompt).input_ids
