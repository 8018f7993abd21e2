"""The foveated query encoder: the cache is DINOv2's own, a deep query is a masked extra token,
a shallow query differs from a deep one only by the layers it skips, frames stay independent."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from vlmflow.foveated.query import attention_entropy, encode_frames, pooled_patches, query_frames


def tiny_dinov2(layers: int = 2, seed: int = 0) -> Dinov2Model:
    torch.manual_seed(seed)
    config = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                          mlp_ratio=2, layerscale_value=0.5, attn_implementation="eager")  # fmt: skip
    return Dinov2Model(config).eval()


@pytest.fixture
def frames() -> torch.Tensor:
    return torch.randn(3, 3, 56, 56, generator=torch.Generator().manual_seed(1))


def test_the_cache_holds_dinov2s_own_keys_values_and_patches(frames):
    vision = tiny_dinov2()
    seen = {}
    hooks = [layer.attention.k_proj.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out))
             for i, layer in enumerate(vision.encoder.layer)]  # fmt: skip
    with torch.no_grad():
        reference = vision(pixel_values=frames).last_hidden_state
        cache = encode_frames(vision, frames)
    for hook in hooks:
        hook.remove()
    for i, keys in enumerate(cache.keys):
        torch.testing.assert_close(keys.transpose(1, 2).reshape(3, 17, 32), seen[i])
    torch.testing.assert_close(cache.patches, reference[:, 1:])


def test_a_deep_query_is_an_extra_token_that_nothing_attends_to(frames):
    """Appending the query to the frame's tokens with its key masked out (so neither the tokens nor
    the query itself attend to it) gives the same output at the query's position."""
    vision = tiny_dinov2()
    queries = torch.randn(3, 32)
    with torch.no_grad():
        out, weights = query_frames(vision, encode_frames(vision, frames), queries, deep=True)
        tokens = torch.cat([vision.embeddings(frames), queries.unsqueeze(1)], dim=1)
        mask = torch.zeros(3, 1, 18, 18)
        mask[..., -1] = float("-inf")
        hidden = tokens
        for layer in vision.encoder.layer:
            hidden = layer(hidden, attention_mask=mask)
        reference = vision.layernorm(hidden)[:, -1]
    assert out.shape == (3, 32)  # one vector per frame
    torch.testing.assert_close(out, reference)
    assert weights.shape == (3, 4, 17)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))


def test_shallow_skips_exactly_the_layers_before_the_last(frames):
    queries = torch.randn(3, 32)
    one_layer = tiny_dinov2(layers=1)
    with torch.no_grad():
        cache = encode_frames(one_layer, frames)
        torch.testing.assert_close(query_frames(one_layer, cache, queries, True)[0],
                                   query_frames(one_layer, cache, queries, False)[0])  # fmt: skip
        vision = tiny_dinov2(layers=2)
        cache = encode_frames(vision, frames)
        deep, shallow = query_frames(vision, cache, queries, True)[0], query_frames(vision, cache, queries, False)[0]
        assert not torch.allclose(deep, shallow)
        vision.encoder.layer[0].attention.q_proj.weight.mul_(3)  # only the deep query passes layer 0's query
        cache = encode_frames(vision, frames)  # (layer 0's keys do not depend on its query weights)
        assert not torch.allclose(query_frames(vision, cache, queries, True)[0], deep)
        torch.testing.assert_close(query_frames(vision, cache, queries, False)[0], shallow)


def test_each_frame_is_queried_on_its_own(frames):
    vision = tiny_dinov2()
    queries = torch.randn(3, 32)
    with torch.no_grad():
        before = query_frames(vision, encode_frames(vision, frames), queries)[0]
        changed = frames.clone()
        changed[1] = torch.randn(3, 56, 56)
        after = query_frames(vision, encode_frames(vision, changed), queries)[0]
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    assert not torch.allclose(after[1], before[1])


def test_gradients_reach_the_query_and_the_encoder(frames):
    vision = tiny_dinov2()
    queries = torch.randn(3, 32, requires_grad=True)
    out, _ = query_frames(vision, encode_frames(vision, frames), queries)
    out.square().sum().backward()
    assert queries.grad.abs().sum() > 0
    assert vision.encoder.layer[0].attention.q_proj.weight.grad.abs().sum() > 0


def test_the_multi_token_baseline_pools_patches_to_a_grid():
    vision = tiny_dinov2()
    frames = torch.randn(2, 3, 56, 56)  # 4 x 4 patches
    with torch.no_grad():
        cache = encode_frames(vision, frames)
    pooled = pooled_patches(cache, 2)
    assert pooled.shape == (2, 4, 32)
    grid = cache.patches.reshape(2, 4, 4, 32)
    torch.testing.assert_close(pooled[:, 1], grid[:, 0:2, 2:4].mean(dim=(1, 2)))  # top-right block
    assert pooled_patches(cache, 4).shape == (2, 16, 32)


def test_attention_entropy_bounds():
    uniform = torch.full((2, 4, 16), 1 / 16)
    assert attention_entropy(uniform).item() == pytest.approx(math.log(16))
    assert attention_entropy(torch.eye(16)[:3]).item() == pytest.approx(0.0)
