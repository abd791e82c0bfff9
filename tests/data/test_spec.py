"""KeypointSpec: the shipped specs (AP-10K's against its real annotation file) and category_ids."""
from __future__ import annotations

import json

import pytest

from dekr.data.spec import KeypointSpec, load_spec, shipped_specs

from tests.helpers.paths import AP10K_JSON, AP10K_SIGMAS



def test_shipped_specs_include_ap10k():
    assert {"coco", "crowdpose", "ap10k"} <= set(shipped_specs())


def test_ap10k_spec_matches_its_annotation_file():
    spec = load_spec("ap10k")
    data = json.loads(AP10K_JSON.read_text())
    category = data["categories"][0]
    assert spec.keypoint_names == tuple(category["keypoints"])
    assert spec.skeleton == tuple((a - 1, b - 1) for a, b in category["skeleton"])
    assert spec.sigmas == AP10K_SIGMAS
    assert spec.category_ids == tuple(c["id"] for c in data["categories"]) == tuple(range(1, 55))
    names = spec.keypoint_names
    assert {(names[a], names[b]) for a, b in spec.flip_pairs} == {
        (f"left_{part}", f"right_{part}") for part in ("eye", "shoulder", "elbow", "front_paw", "hip", "knee",
                                                       "back_paw")}
    assert [names[i] for i in range(spec.num_keypoints) if spec.flip_index[i] == i] == ["nose", "neck",
                                                                                       "root_of_tail"]
    torso = [(names[a], names[b]) for a, b in (spec.rescore_limbs[i] for i in spec.rescore_torso_limbs)]
    assert torso == [("neck", "root_of_tail")]
    assert not spec.crowd_eval


@pytest.mark.parametrize("name", ["coco", "crowdpose"])
def test_person_specs_cover_the_person_category(name):
    spec = load_spec(name)
    assert spec.category_ids == (1,) and spec.pooled_category_id == 1


def test_category_ids_from_yaml_and_pooled_id(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("name: two\nkeypoint_names: [a, b]\nflip_pairs: []\nsigmas: [0.05, 0.05]\n"
                    "category_ids: [26, 1]\n")
    spec = load_spec(path)
    assert spec.category_ids == (26, 1) and spec.pooled_category_id == 26


@pytest.mark.parametrize("ids", [(), (3, 3)])
def test_empty_or_repeated_category_ids_are_refused(ids):
    with pytest.raises(ValueError, match="category_ids"):
        KeypointSpec(name="bad", keypoint_names=("a",), flip_pairs=(), sigmas=(0.05,), category_ids=ids)


def test_spec_file_errors_name_the_file_and_the_field(tmp_path):
    good = {"name": "two", "keypoint_names": ["a", "b"], "flip_pairs": [], "sigmas": [0.05, 0.05]}
    with pytest.raises(ValueError, match=r"my\.yaml: unknown keypoint spec option\(s\) \['colour'\]"):
        KeypointSpec.from_dict({**good, "colour": "red"}, source="my.yaml")
    with pytest.raises(ValueError, match=r"my\.yaml: keypoint spec option 'crowd_eval' must be"):
        KeypointSpec.from_dict({**good, "crowd_eval": "sometimes"}, source="my.yaml")
    with pytest.raises(ValueError, match=r"my\.yaml: keypoint spec misses field\(s\) \['sigmas'\]"):
        KeypointSpec.from_dict({k: v for k, v in good.items() if k != "sigmas"}, source="my.yaml")
    spec = KeypointSpec.from_dict({**good, "skeleton": [[0, 1]]}, source="my.yaml")
    assert spec.skeleton == ((0, 1),) and spec.keypoint_names == ("a", "b")
