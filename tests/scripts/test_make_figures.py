"""scripts/make_figures.py demo_predictions: a checkpoint's poses on the demo's synthetic images,
predicted through ``dekr.load`` (the library's one prediction path)."""
from __future__ import annotations


from dekr.config import load_section
from dekr.data.dataset import read_image_rgb
from dekr.data.synthetic import SyntheticConfig, render_scene
from dekr.dataclass_config import as_config
from tests.test_export import small_checkpoint



def test_demo_predictions_grid(tmp_path):
    import make_figures

    ckpt = small_checkpoint(tmp_path / "demo.ckpt")
    [path] = make_figures.main(["--out", str(tmp_path / "figs"), "--ckpt", str(ckpt), "--only", "predictions"])
    assert path.name == "demo_predictions.png"
    syn = as_config(SyntheticConfig, load_section("demo.yaml", "data")["synthetic"], "synthetic")
    sizes = [render_scene(syn.seed, "val", i, syn).shape[:2] for i in range(4)]
    grid = read_image_rgb(path)
    # predictions over ground truth, each image with 2 px margins, doubled, under a 28 px title
    row, width = 2 * max(h for h, _ in sizes), 2 * sum(w + 4 for _, w in sizes)
    assert grid.shape[:2] == (28 + 2 * row + 8, width)
    top, bottom = grid[28:28 + row], grid[28 + row + 8:]
    assert top.shape == bottom.shape and (top != bottom).any()  # the poses drawn differ from the truth


def test_offset_sampling_figure_is_the_synthetic_image_upscaled(tmp_path):
    import make_figures

    ckpt = small_checkpoint(tmp_path / "demo.ckpt")
    [path] = make_figures.main(["--out", str(tmp_path / "figs"), "--offsets-ckpt", str(ckpt), "--only", "offsets"])
    syn = as_config(SyntheticConfig, load_section("demo.yaml", "data")["synthetic"], "synthetic")
    h, w = render_scene(syn.seed, "val", 7, syn).shape[:2]
    assert path.name == "offset_sampling.png" and read_image_rgb(path).shape[:2] == (4 * h, 4 * w)
