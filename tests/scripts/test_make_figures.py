"""scripts/make_figures.py demo_predictions and demo_crowd: a checkpoint's poses on the demo's synthetic
images, predicted through ``dekr.load`` (the library's one prediction path)."""
from __future__ import annotations

import numpy as np

import dekr
from dekr.config import load_section
from dekr.data.dataset import read_image_rgb
from dekr.data.synthetic import SyntheticConfig, render_scene
from dekr.dataclass_config import as_config
from tests.helpers.checkpoints import small_checkpoint


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


def test_crowd_figure_is_what_infer_draws_on_the_demo_media_image_under_a_title(tmp_path):
    import make_demo_media
    import make_figures

    from dekr.inference.outputs import DrawOptions

    ckpt = small_checkpoint(tmp_path / "demo.ckpt")
    [path] = make_figures.main(["--out", str(tmp_path / "figs"), "--ckpt", str(ckpt), "--only", "crowd"])
    assert path.name == "demo_crowd.png"
    # the image scripts/make_demo_media.py writes as demo_media/people.jpg by default, before JPEG
    scene, _ = make_demo_media.demo_scenes(make_demo_media.parse_args([]))
    image, anns = scene.frame(0)
    assert image.shape == (256, scene.width, 3) and len(anns) == 4
    draw = DrawOptions()
    drawn = dekr.load(ckpt, device="cpu")(image)[0].draw(**draw.draw_kwargs())  # infer.py's pose threshold
    figure = read_image_rgb(path)
    assert figure.shape == (26 + 256, scene.width, 3)
    np.testing.assert_array_equal(figure[26:], drawn)
    title = figure[:26]
    assert (title == 255).mean() > 0.8 and (title < 100).any()  # black text on white
