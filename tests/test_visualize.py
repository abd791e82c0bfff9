"""Drawing: limb colors, score threshold, ids, robustness; adaptive-conv sampling points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dekr.data.dataset import read_image_rgb
from dekr.data.spec import load_spec
from dekr.visualize import (draw_caption, draw_poses, draw_sampling_points, id_color, keypoint_colors,
                            limb_colors)

from tests.helpers.paths import FIXTURES

SPEC = load_spec("coco")


def one_pose(score: float = 1.0) -> np.ndarray:
    """A straight vertical stick person in a 200x200 image (all 17 keypoints, well apart)."""
    kps = np.zeros((1, 17, 3))
    kps[0, :, 0] = 100 + np.array([0, -5, 5, -10, 10, -30, 30, -40, 40, -50, 50, -20, 20, -20, 20, -20, 20])
    kps[0, :, 1] = np.array([20, 15, 15, 18, 18, 50, 50, 80, 80, 110, 110, 110, 110, 150, 150, 190, 190])
    kps[0, :, 2] = score
    return kps


def test_limb_colors_and_threshold():
    image = np.zeros((200, 200, 3), np.uint8)
    kps = one_pose()
    out = draw_poses(image, kps, SPEC.skeleton, min_score=0.5, thickness=5, show_ids=False)
    assert image.sum() == 0, "the input must not be modified"
    colors = limb_colors(SPEC.skeleton, SPEC.flip_pairs)
    assert len(set(colors)) == len(SPEC.skeleton)
    # Middle of the left shin (15 -> 13, limb 0) has limb 0's color.
    a, b = SPEC.skeleton[0]
    mid = ((kps[0, a, :2] + kps[0, b, :2]) / 2).round().astype(int)
    assert tuple(out[mid[1], mid[0]]) == colors[0]
    # Under the threshold nothing is drawn.
    assert draw_poses(image, one_pose(0.2), SPEC.skeleton, min_score=0.5).sum() == 0
    # A low keypoint removes the limbs touching it only.
    partial = kps.copy()
    partial[0, 15, 2] = 0.0
    out2 = draw_poses(image, partial, SPEC.skeleton, min_score=0.5, thickness=5, show_ids=False)
    assert out2[mid[1], mid[0]].sum() == 0


def test_person_colors_ids_and_order():
    image = np.zeros((200, 200, 3), np.uint8)
    kps = one_pose()
    out = draw_poses(image, kps, SPEC.skeleton, ids=[7], color_by="person", thickness=5, show_ids=False)
    a, b = SPEC.skeleton[0]
    mid = ((kps[0, a, :2] + kps[0, b, :2]) / 2).round().astype(int)
    assert tuple(out[mid[1], mid[0]]) == id_color(7)
    labelled = draw_poses(image, kps, SPEC.skeleton, ids=[7], color_by="person", thickness=5)
    top = labelled[:15]
    assert (np.all(top == id_color(7), axis=-1)).sum() > 20, "the id label's box is in the id color"
    assert id_color(-1) == (200, 200, 200) and id_color(1) != id_color(2)
    # Poses under min_pose_score are skipped; max_poses keeps the best.
    two = np.concatenate([kps, kps + np.array([0, 0, 0])])
    assert draw_poses(image, two, SPEC.skeleton, scores=[0.1, 0.05], min_pose_score=0.5).sum() == 0
    best_only = draw_poses(
        image,
        two,
        SPEC.skeleton,
        scores=[0.9, 0.1],
        ids=[1, 2],
        max_poses=1,
        color_by="person",
        thickness=5,
        show_ids=False,
    )
    assert tuple(best_only[mid[1], mid[0]]) == id_color(1)


def test_bad_inputs_and_far_points():
    image = np.zeros((50, 60, 3), np.uint8)
    assert draw_poses(image, np.zeros((0, 17, 3)), SPEC.skeleton).shape == image.shape
    far = one_pose() * np.array([1e9, -1e9, 1])
    draw_poses(image, far, SPEC.skeleton)  # no OpenCV overflow
    with pytest.raises(ValueError, match="2 poses but 1 scores"):
        draw_poses(image, np.concatenate([one_pose(), one_pose()]), SPEC.skeleton, scores=[1.0])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        draw_poses(np.zeros((5, 5)), one_pose(), SPEC.skeleton)
    assert draw_caption(image, "frame 3").sum() > 0


def test_draws_real_annotations():
    gt = json.loads((FIXTURES / "coco" / "test_coco.json").read_text())
    image = read_image_rgb(FIXTURES / "coco" / "000000197388.jpg")
    anns = [a for a in gt["annotations"] if a["image_id"] == 197388 and a["num_keypoints"] > 0]
    kps = np.stack([np.asarray(a["keypoints"], float).reshape(-1, 3) for a in anns])
    kps[..., 2] = (kps[..., 2] > 0).astype(float)
    out = draw_poses(image, kps, SPEC.skeleton, flip_pairs=SPEC.flip_pairs)
    changed = np.any(out != image, axis=-1).mean()
    assert 0.005 < changed < 0.2


def test_make_figures_sample_and_curves(tmp_path):
    """scripts/make_figures.py: the sample image, and the training curve from metrics.json and CSV."""
    import make_figures

    history = [
        {
            "epoch": e,
            "step": 32 * (e + 1),
            "train/epoch_loss": 0.1 / (e + 1),
            **({"val/AP": 0.05 * ((e + 1) // 5 - 1)} if (e + 1) % 5 == 0 else {}),
        }
        for e in range(20)
    ]
    (tmp_path / "metrics.json").write_text(json.dumps({"best_score": 0.15, "history": history}))
    written = make_figures.main(
        ["--out", str(tmp_path / "figs"), "--metrics", str(tmp_path / "metrics.json")]
    )
    assert [p.name for p in written] == ["sample_poses.png", "training_curve.png"]
    curve = read_image_rgb(tmp_path / "figs" / "training_curve.png")
    assert curve.shape[1] > 600 and (curve < 250).any()
    rows = make_figures.read_history(tmp_path / "metrics.json")
    key, xs, ys = make_figures._series(rows, make_figures.AP_KEYS)
    # the validation epochs (EpochHistory writes val/AP only in the epochs that validated)
    assert key == "val/AP" and xs == [5, 10, 15, 20] and ys == pytest.approx([0.0, 0.05, 0.1, 0.15])

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,train/loss_epoch,val/AP\n0,31,0.5,\n0,31,,0.1\n1,63,0.4,\n1,63,,0.2\n")
    rows = make_figures.read_history(csv_path)
    assert rows == [
        {"epoch": 0.0, "step": 31.0, "train/loss_epoch": 0.5, "val/AP": 0.1},
        {"epoch": 1.0, "step": 63.0, "train/loss_epoch": 0.4, "val/AP": 0.2},
    ]
    make_figures.main(["--out", str(tmp_path / "csv"), "--metrics", str(csv_path), "--only", "curve"])
    assert (tmp_path / "csv" / "training_curve.png").is_file()
    with pytest.raises(SystemExit, match="does not exist"):
        make_figures.main(
            ["--out", str(tmp_path), "--metrics", str(tmp_path / "none.json"), "--only", "curve"]
        )


def test_draws_a_non_coco_skeleton_with_sides_from_its_flip_pairs():
    """AP-10K (17 animal keypoints, its own skeleton): a real annotation drawn with the spec's skeleton;
    left limbs lighter than right ones, the sides read off the flip pairs (not the names)."""
    spec = load_spec("ap10k")
    gt = json.loads((FIXTURES / "ap10k" / "test_ap10k.json").read_text())
    ann = next(a for a in gt["annotations"] if a["image_id"] == 4)
    kps = np.asarray(ann["keypoints"], float).reshape(1, -1, 3)
    kps[..., 2] = (kps[..., 2] > 0).astype(float)
    image = read_image_rgb(FIXTURES / "ap10k" / "000000000004.jpg")
    colors = limb_colors(spec.skeleton, spec.flip_pairs)
    names = spec.keypoint_names
    limb = {(names[a], names[b]): i for i, (a, b) in enumerate(spec.skeleton)}
    left, right = limb[("left_hip", "left_knee")], limb[("right_hip", "right_knee")]
    # HSV value 1.0 on the left, 0.85 on the right and the centre line (neck - root of tail).
    assert max(colors[left]) == 255 and max(colors[right]) == int(0.85 * 255)
    assert max(colors[limb[("neck", "left_shoulder")]]) == 255  # touches the left side only
    assert max(colors[limb[("neck", "root_of_tail")]]) == int(0.85 * 255)
    assert len(set(colors)) == len(spec.skeleton)
    # The sides come from the flip pairs alone: without them no limb is set apart.
    assert {max(c) for c in limb_colors(spec.skeleton)} == {255}

    out = draw_poses(image, kps, spec.skeleton, flip_pairs=spec.flip_pairs, thickness=3, show_ids=False)
    drawn = 0
    for i, (a, b) in enumerate(spec.skeleton):
        if kps[0, a, 2] and kps[0, b, 2]:
            mid = ((kps[0, a, :2] + kps[0, b, :2]) / 2).round().astype(int)
            drawn += tuple(out[mid[1], mid[0]]) == colors[i]
    labelled_limbs = sum(bool(kps[0, a, 2] and kps[0, b, 2]) for a, b in spec.skeleton)
    assert labelled_limbs >= 12 and drawn >= labelled_limbs - 3, f"{drawn} of {labelled_limbs} limbs in colour"
    assert 0.001 < np.any(out != image, axis=-1).mean() < 0.1


def test_sampling_points_in_branch_colors_centre_on_top_and_selection():
    """The last conv's taps are dots in their keypoint's color, earlier convs' rings; the centre is
    white; unselected branches are not drawn; the legend names the drawn ones."""
    image = np.zeros((200, 200, 3), np.uint8)
    colors = keypoint_colors(SPEC.num_keypoints, SPEC.flip_pairs)
    assert len(set(colors)) == 17 and max(colors[1]) == 255 and max(colors[2]) == int(0.85 * 255)  # left eye lighter
    grid = np.array([(gx, gy) for gy in (-1, 0, 1) for gx in (-1, 0, 1)], float)
    points = np.zeros((1, 17, 2, 9, 2))
    points[0, :, 0] = 100 + 20 * grid  # first conv: rings
    points[0, :, 1] = 100 + 60 * grid  # last conv: dots
    points[0, 5, 1] = 100 + 80 * grid  # keypoint 5's last conv further out
    out = draw_sampling_points(image, np.array([[100.0, 100.0]]), points, colors, branches=[0, 5], radius=4)
    assert image.sum() == 0, "the input must not be modified"
    assert tuple(out[100, 100]) == (255, 255, 255)  # the centre, on top of the centre taps
    assert tuple(out[40, 40]) == colors[0] and tuple(out[20, 180]) == colors[5]  # filled dots
    assert tuple(out[80, 80]) == (0, 0, 0) and out[80, 84].any()  # a ring: empty middle
    only_one = draw_sampling_points(image, np.array([[100.0, 100.0]]), points, colors, branches=[5], radius=4)
    assert only_one[40, 40].sum() == 0 and tuple(only_one[20, 180]) == colors[5]
    legend = draw_sampling_points(image, np.zeros((0, 2)), np.zeros((0, 17, 2, 9, 2)), colors, [0, 5],
                                  SPEC.keypoint_names)
    assert legend[:30, :80].any() and not legend[60:].any()  # the legend only, top left
    with pytest.raises(ValueError, match=r"\(P, G, L, 9, 2\)"):
        draw_sampling_points(image, np.zeros((2, 2)), points)
    with pytest.raises(ValueError, match="branches"):
        draw_sampling_points(image, np.zeros((1, 2)), points, branches=[17])
