"""Finding a video's moving object from its frames, and the query attention that lands on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmflow.foveated.data import read_samples
from vlmflow.foveated.motion import mover_attention, moving_patches
from vlmflow.synth.videos import write_shape_videos

SIZE, FRAMES, PATCH = 112, 4, 14  # the default's videos and encoder patches: an 8x8 grid
GRID = SIZE // PATCH
MEAN, STD = 0.45, 0.225  # any normalisation: only differences between frames count


def normalised(frames: list[Path]) -> torch.Tensor:
    """(frames, 3, height, width) as an image processor would hand them to the encoder."""
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f in frames])
    return (torch.from_numpy(pixels).permute(0, 3, 1, 2) - MEAN) / STD


def coloured_cover(frames: list[Path]) -> np.ndarray:
    """(frames, grid * grid): the share of each patch's pixels that are coloured (the shape; the
    background and distractors are grey)."""
    cover = []
    for frame in frames:
        rgb = np.asarray(Image.open(frame).convert("RGB"), dtype=np.int16)
        coloured = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 60  # (height, width)
        cover.append(coloured.reshape(GRID, PATCH, GRID, PATCH).mean(axis=(1, 3)).reshape(-1))
    return np.stack(cover)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("motion")
    write_shape_videos(root, "val", 60, seed=0, image_size=SIZE, frames=FRAMES)
    return [s for s in read_samples(root / "val.jsonl") if s.kind == "video"]


def test_the_moving_patches_are_the_shapes_in_each_frame(videos) -> None:
    assert len(videos) >= 20
    for sample in videos:
        moving = moving_patches(normalised(list(sample.frames)), GRID).numpy()
        cover = coloured_cover(list(sample.frames))
        # every patch the shape fills moves, and nothing moves where the shape is not
        assert (moving | (cover < 0.9)).all(), sample.id
        assert not (moving & (cover == 0)).any(), sample.id
        assert moving.any(axis=1).all(), sample.id


def test_a_still_video_has_no_mover_and_short_ones_are_refused() -> None:
    still = torch.randn(1, 3, 28, 28).expand(4, 3, 28, 28)
    assert not moving_patches(still, 2).any()
    with pytest.raises(ValueError, match="at least 3 frames"):
        moving_patches(torch.randn(2, 3, 28, 28), 2)


def test_uniform_attention_scores_the_share_and_fixated_attention_all() -> None:
    moving = torch.zeros(3, 16, dtype=torch.bool)
    moving[0, [1, 2]] = True
    moving[2, [5, 6, 9, 10]] = True  # frame 1 has no mover and is left out
    uniform = torch.full((3, 2, 17), 1 / 17)
    mass, share = mover_attention(uniform, moving)
    torch.testing.assert_close(mass, torch.tensor([2 / 16, 4 / 16]))
    torch.testing.assert_close(share, mass)
    fixated = torch.zeros(3, 2, 17)
    fixated[:, :, 0] = 0.5  # the CLS share is dropped before measuring
    fixated[0, :, 2] = fixated[2, :, 6] = 0.5
    fixated[1, :, 16] = 0.5
    mass, _ = mover_attention(fixated, moving)
    torch.testing.assert_close(mass, torch.ones(2))
    with pytest.raises(ValueError, match="does not match"):
        mover_attention(uniform, moving[:, :9])
