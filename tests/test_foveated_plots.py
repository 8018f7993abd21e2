"""Foveated-sweep figures and table from fake run folders: a foveated run (coarse + fine), an
A6-like coarse-only run and a B1-like multi-token run without query or attention dumps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from PIL import Image

from vlmflow.foveated import plots as fp
from vlmflow.foveated import tables as ft

GRID = 4
TOKENS = 1 + GRID * GRID
SAMPLES, FRAMES, HEADS, SIZE = 2, 3, 2, 32


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _log_rows(kind: str, steps: int = 30) -> list[dict[str, Any]]:
    rows = []
    for step in range(1, steps + 1):
        fine, coarse = 2.0 - step / 100, 2.2 - step / 100
        row = {"step": step, "samples": 8 * step, "loss": 2.1 - step / 100, "grad_norm": step / 10,
               "samples_per_s": 50.0, "lr/connector": 1e-4, "lr/language": 1e-5,
               "loss_fine": fine, "loss_coarse": coarse, "loss_ratio": fine / coarse,
               "attention_entropy": 2.5 - step / 100}  # fmt: skip
        if kind == "coarse_only":
            row |= {"loss_fine": None, "loss_ratio": None}
        if kind == "multi_token":
            row |= {"loss_fine": None, "loss_coarse": None, "loss_ratio": None}
            row |= {"attention_entropy": None}
        rows.append(row)
    return rows


def _eval_rows(kind: str) -> list[dict[str, Any]]:
    losses = {
        "foveated": [2.0, 1.5, 1.7],
        "coarse_only": [2.1, 1.9, 1.8],
        "multi_token": [1.9, 1.4, 1.3],
    }
    rows = []
    for i, loss in enumerate(losses[kind]):
        query = kind != "multi_token"
        rows.append({"step": 10 * (i + 1), "val_loss": loss, "val_accuracy": 0.3 + 0.1 * i,
                     "val_loss_fine": loss - 0.1 if kind == "foveated" else None,
                     "val_loss_coarse": loss + 0.1 if query else None,
                     "attention_entropy": 2.0 if query else None,
                     "mover_lift": 1.0 + i if query else None,
                     "val_loss/video": loss, "val_accuracy/video": 0.5})  # fmt: skip
    return rows


def _eval_json(run: str, kind: str, accuracy: float, val_loss: float) -> dict[str, Any]:
    if kind == "multi_token":
        modes = {"multi_token": {"val_loss": val_loss, "accuracy": accuracy}}
        return {
            "run": run,
            "architecture": "multi_token",
            "visual_tokens_per_frame": 16,
            "modes": modes,
        }
    modes = {"coarse_only": {"val_loss": val_loss + 0.2, "accuracy": accuracy - 0.1}}
    if kind == "foveated":
        modes["coarse_fine"] = {"val_loss": val_loss, "accuracy": accuracy, "accuracy/video": 0.4}
    modes["autoregressive"] = {"val_loss": val_loss + 0.1, "accuracy": accuracy - 0.05}
    return {"run": run, "architecture": "foveated", "visual_tokens_per_frame": 1, "modes": modes}


def _attention(run_dir: Path, fine: bool) -> None:
    rng = np.random.default_rng(0)
    folder = run_dir / "attention"
    folder.mkdir()
    ids = np.array([f"s{i}" for i in range(SAMPLES)])
    mask = np.ones((SAMPLES, FRAMES), dtype=bool)
    mask[1, -1] = False
    for name in ("step-10.npz", "step-00030.npz"):
        weights = rng.dirichlet(np.ones(TOKENS), size=(SAMPLES, FRAMES, HEADS)).astype(np.float16)
        arrays = {"coarse": weights, "frame_mask": mask, "sample_ids": ids}
        if fine:
            arrays["fine"] = weights[..., ::-1].copy()
        np.savez(folder / name, **arrays)
    pixels = rng.integers(0, 255, size=(SAMPLES, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    np.savez(folder / "frames.npz", pixels=pixels, sample_ids=ids)


def _run(root: Path, name: str, kind: str, accuracy: float, val_loss: float) -> Path:
    run_dir = root / name
    run_dir.mkdir()
    _write_jsonl(run_dir / "log.jsonl", _log_rows(kind))
    _write_jsonl(run_dir / "evals.jsonl", _eval_rows(kind))
    (run_dir / "eval.json").write_text(json.dumps(_eval_json(name, kind, accuracy, val_loss)))
    if kind != "multi_token":
        _attention(run_dir, fine=kind == "foveated")
    return run_dir


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    return {
        "F3": _run(tmp_path, "F3", "foveated", accuracy=0.6, val_loss=1.2),
        "A6": _run(tmp_path, "A6", "coarse_only", accuracy=0.5, val_loss=1.4),
        "B1": _run(tmp_path, "B1", "multi_token", accuracy=0.7, val_loss=1.1),
    }


def _evals(runs: dict[str, Path]) -> dict[str, Path]:
    return {name: folder / "eval.json" for name, folder in runs.items()}


def _assert_png(path: Path, min_width: int = 300, min_height: int = 200) -> None:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert min_width <= width <= 6000 and min_height <= height <= 6000


def test_every_figure_is_a_png(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "figures"
    fp.plot_sweep_curves(runs, out / "sweep.png", "freeze sweep")
    fp.plot_sweep_curves(runs, out / "accuracy.png", "vs alternatives", metric="val_accuracy")
    fp.plot_loss_ratio(runs, out / "ratio.png")
    fp.plot_attention_entropy(runs, out / "entropy.png")
    fp.plot_token_frontier(_evals(runs), out / "frontier.png")
    fp.plot_token_frontier(_evals(runs), out / "frontier_loss.png", metric="val_loss")
    fp.plot_attention_heatmaps(runs["F3"], out / "heatmaps_f3.png")
    fp.plot_attention_heatmaps(runs["A6"], out / "heatmaps_a6.png", samples=1)
    fp.plot_three_modes(_evals(runs), out / "modes.png")
    for name in ("sweep", "accuracy", "ratio", "entropy", "frontier", "frontier_loss", "modes"):
        _assert_png(out / f"{name}.png")
    _assert_png(out / "heatmaps_f3.png", min_height=800)  # 2 samples x 2 steps x 2 passes
    _assert_png(out / "heatmaps_a6.png", min_height=250)  # 1 sample x 2 steps x coarse
    assert not list(out.glob(".*.tmp"))


def test_attention_files_and_tokens(runs: dict[str, Path]) -> None:
    assert [step for step, _ in fp.attention_steps(runs["F3"])] == [10, 30]
    assert fp.attention_steps(runs["B1"]) == []
    assert fp.attention_tokens([runs["B1"], runs["A6"]]) == TOKENS
    assert fp.attention_tokens([runs["B1"]]) is None


def test_frontier_points_use_best_mode_and_tokens(runs: dict[str, Path]) -> None:
    points = {run: (tokens, value) for run, tokens, value in fp.frontier_points(_evals(runs))}
    assert points == {"F3": (1, 0.6), "A6": (1, 0.4), "B1": (16, 0.7)}  # A6: coarse_only
    losses = {run: value for run, _, value in fp.frontier_points(_evals(runs), "val_loss")}
    assert losses == {"F3": 1.2, "A6": pytest.approx(1.6), "B1": 1.1}


def test_pareto_keeps_only_runs_better_than_fewer_tokens() -> None:
    b1_better = [("F3", 1, 0.6), ("A6", 1, 0.4), ("B1", 16, 0.7)]
    assert fp.pareto(b1_better, lower_is_better=False) == [("F3", 1, 0.6), ("B1", 16, 0.7)]
    b1_worse = [("F3", 1, 0.6), ("A6", 1, 0.4), ("B1", 16, 0.5)]
    assert fp.pareto(b1_worse, lower_is_better=False) == [("F3", 1, 0.6)]
    losses = [("F3", 1, 1.2), ("A8", 4, 1.3), ("B1", 16, 1.1)]
    assert fp.pareto(losses, lower_is_better=fp.lower_is_better("val_loss")) == [
        ("F3", 1, 1.2),
        ("B1", 16, 1.1),
    ]
    assert not fp.lower_is_better("accuracy")


def test_patch_map_averages_heads_and_drops_cls() -> None:
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.ones(TOKENS), size=HEADS)
    grid_map = fp.patch_map(weights.astype(np.float16), GRID)
    assert grid_map.shape == (GRID, GRID)
    cls_share = weights[:, 0].mean()
    assert grid_map.sum() == pytest.approx(1 - cls_share, abs=1e-3)
    assert grid_map[0, 1] == pytest.approx(weights[:, 2].mean(), abs=1e-3)  # row-major patches
    assert grid_map[1, 0] == pytest.approx(weights[:, 1 + GRID].mean(), abs=1e-3)
    assert fp.grid_size(TOKENS) == GRID
    with pytest.raises(ValueError, match="square grid"):
        fp.grid_size(16)
    with pytest.raises(ValueError, match="not 1 CLS"):
        fp.patch_map(weights, GRID + 1)


def test_sweep_table_values_and_nulls(runs: dict[str, Path], tmp_path: Path) -> None:
    frame = ft.sweep_table(_evals(runs), runs, tmp_path / "t.csv", tmp_path / "t.md")
    rows = {row["run"]: row for row in frame.iter_rows(named=True)}
    f3, a6, b1 = rows["F3"], rows["A6"], rows["B1"]
    assert list(rows) == ["F3", "A6", "B1"]
    assert (f3["val_loss"], f3["val_accuracy"]) == (1.7, pytest.approx(0.5))
    assert (f3["min_val_loss"], f3["min_val_loss_step"]) == (1.5, 20)
    assert (b1["min_val_loss"], b1["min_val_loss_step"]) == (1.3, 30)
    ratio = np.mean([row["loss_ratio"] for row in _log_rows("foveated")[-20:]])
    assert f3["loss_ratio"] == pytest.approx(ratio)
    assert a6["loss_ratio"] is None and b1["loss_ratio"] is None
    assert f3["max_grad_norm"] == pytest.approx(3.0)
    assert (f3["mover_lift"], b1["mover_lift"]) == (3.0, None)
    assert (f3["visual_tokens_per_frame"], b1["visual_tokens_per_frame"]) == (1, 16)
    assert f3["coarse_fine/accuracy"] == 0.6 and a6["coarse_fine/accuracy"] is None
    assert b1["multi_token/val_loss"] == 1.1 and b1["coarse_only/val_loss"] is None
    assert pl.read_csv(tmp_path / "t.csv").height == 3
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0].startswith("| run | visual_tokens_per_frame | val_loss |")
    assert len(md) == 5 and "| 1.5 | 20 |" in md[2]
    assert f"| {ratio:.4g} |" in md[2] and f"| {ratio:.5g} |" not in md[2]


def test_no_data_raises(runs: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    baseline = {"B1": runs["B1"]}
    with pytest.raises(ValueError, match="no run has val_loss"):
        fp.plot_sweep_curves({"E": empty}, tmp_path / "a.png", "t")
    with pytest.raises(ValueError, match="loss_ratio"):
        fp.plot_loss_ratio(baseline, tmp_path / "b.png")
    with pytest.raises(ValueError, match="attention_entropy"):
        fp.plot_attention_entropy(baseline, tmp_path / "c.png")
    with pytest.raises(ValueError, match="no eval.json"):
        fp.plot_token_frontier({"E": empty / "eval.json"}, tmp_path / "d.png")
    with pytest.raises(ValueError, match="attention"):
        fp.plot_attention_heatmaps(runs["B1"], tmp_path / "e.png")
    with pytest.raises(ValueError, match="no eval.json"):
        fp.plot_three_modes(_evals(runs), tmp_path / "f.png", metrics=("missing",))
    with pytest.raises(ValueError, match="no run has"):
        ft.sweep_table({"E": empty / "eval.json"}, {"E": empty}, tmp_path / "g.csv", tmp_path / "g.md")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("g.*"))


def test_labels_that_would_collide_are_spread_and_the_others_stay():
    from vlmflow.core.figures import spread

    placed = spread([0.29, 0.0, 0.29, 0.15, 0.0], gap=0.02)
    assert placed[3] == 0.15  # alone: at its value
    assert sorted(placed) == pytest.approx(sorted([0.28, 0.30, -0.01, 0.01, 0.15]))
    assert all(abs(a - b) >= 0.02 - 1e-12 for i, a in enumerate(placed) for b in placed[i + 1 :])
