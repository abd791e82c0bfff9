"""spec_from_coco on real annotation files (COCO, AP-10K, CrowdPose) and its naming, sigma and category rules."""
from __future__ import annotations

import copy
import json
import logging

import pytest
import yaml

from dekr.data.make_spec import DEFAULT_SIGMA, propose_flip_pairs, spec_from_coco, torso_limbs
from dekr.data.spec import KeypointSpec, load_spec

from tests.helpers.paths import FIXTURES
from tests.helpers.paths import AP10K_JSON, AP10K_SIGMAS

COCO_JSON = FIXTURES / "coco" / "test_coco.json"


def _ap10k() -> dict:
    return json.loads(AP10K_JSON.read_text())


def test_coco_file_gives_the_shipped_coco_spec():
    # The rules (flip pairs by name, sorted skeleton limbs, shoulder-hip torso) reproduce the official
    # COCO spec, rescoring limbs and torso limbs included.
    coco = load_spec("coco")
    derived = spec_from_coco(COCO_JSON, sigmas=coco.sigmas, name="coco")
    assert derived.spec == coco
    assert derived.centre_keypoints == ("nose",) and derived.unpaired_keypoints == ()
    assert derived.sigmas_given and derived.category_names == ("person",)


def test_ap10k_file_gives_the_shipped_ap10k_spec():
    derived = spec_from_coco(AP10K_JSON, sigmas=AP10K_SIGMAS, name="ap10k")
    assert derived.spec == load_spec("ap10k")
    assert derived.centre_keypoints == ("nose", "neck", "root_of_tail")
    assert len(derived.category_names) == 54 and derived.category_names[25] == "jaguar"


def test_yaml_loads_back_to_the_spec(tmp_path):
    derived = spec_from_coco(AP10K_JSON, categories=[26, "antelope"], sigmas=AP10K_SIGMAS, name="cats")
    text = derived.to_yaml()
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "26 jaguar, 1 antelope" in text and "no side (mapped to themselves): nose, neck, root_of_tail" in \
        text.replace("\n# ", " ").lower()
    (tmp_path / "cats.yaml").write_text(text)
    spec = load_spec(tmp_path / "cats.yaml")
    assert spec == derived.spec and spec.category_ids == (26, 1) and spec.pooled_category_id == 26


def test_default_sigmas_are_stated_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        derived = spec_from_coco(AP10K_JSON)
    assert derived.spec.sigmas == (DEFAULT_SIGMA,) * 17 and not derived.sigmas_given
    assert "no OKS sigmas given" in caplog.text
    assert f"WARNING: no sigmas were given; every keypoint has the default OKS sigma {DEFAULT_SIGMA}" in \
        derived.to_yaml().replace("\n# ", " ")
    assert derived.spec.name == "test_ap10k"  # the file's stem


@pytest.mark.parametrize("left,right", [
    ("left_eye", "right_eye"), ("eye_l", "eye_r"), ("LeftEye", "RightEye"), ("L_Eye", "R_Eye"),
    ("front_left_paw", "front_right_paw"), ("left-hand", "right-hand"), ("lefthand", "righthand"),
    ("Hip.L", "Hip.R"), ("lKnee", "rKnee"),
])
def test_flip_pairs_from_naming_styles(left, right):
    pairs, centre, unpaired = propose_flip_pairs(["nose", right, left, "tail"])
    assert pairs == ((2, 1),) and centre == ("nose", "tail") and unpaired == ()


def test_sided_keypoints_without_a_unique_partner_are_reported(caplog):
    pairs, _, unpaired = propose_flip_pairs(["left_eye", "right_eye", "REye", "left_tail"])
    assert pairs == () and unpaired == ("left_eye", "right_eye", "REye", "left_tail")
    data = _ap10k()
    for category in data["categories"]:
        category["keypoints"][1] = "eye_2"  # right_eye renamed: left_eye loses its partner
    with caplog.at_level(logging.WARNING):
        derived = spec_from_coco(data, sigmas=AP10K_SIGMAS)
    assert derived.unpaired_keypoints == ("left_eye",) and "left_eye" in caplog.text
    assert "CHECK, a side but no partner: left_eye" in derived.to_yaml().replace("\n# ", " ")
    assert derived.spec.flip_index[0] == 0


def test_torso_rule():
    names = ["neck", "left_shoulder", "left_hip", "root_of_tail", "pelvis", "nose"]
    limbs = [(0, 1), (1, 2), (0, 3), (5, 0), (4, 0), (2, 3)]
    assert torso_limbs(names, limbs) == (1, 2, 4)
    assert torso_limbs(["a", "b"], [(0, 1)]) == ()  # none: rescore.py then normalises by every limb


def test_category_choice_by_id_and_name():
    derived = spec_from_coco(AP10K_JSON, categories=["26", "Antelope"], sigmas=AP10K_SIGMAS)
    assert derived.spec.category_ids == (26, 1) and derived.category_names == ("jaguar", "antelope")
    with pytest.raises(ValueError, match=r"test_ap10k.json: no category 'unicorn'.*26 \(jaguar\)"):
        spec_from_coco(AP10K_JSON, categories=["unicorn"])


def test_categories_with_different_skeletons_are_named():
    data = _ap10k()
    data["categories"][25]["keypoints"] = list(reversed(data["categories"][25]["keypoints"]))
    with pytest.raises(ValueError, match=r"categories 1 \(antelope\) and 26 \(jaguar\) have different keypoint names"):
        spec_from_coco(data)
    assert spec_from_coco(data, categories=[26]).spec.category_ids == (26,)  # alone it is fine
    data = _ap10k()
    data["categories"][3]["skeleton"] = data["categories"][3]["skeleton"][:-1]
    with pytest.raises(ValueError, match=r"categories 1 \(antelope\) and 4 \(buffalo\) have different skeletons"):
        spec_from_coco(data)
    data = _ap10k()  # the same limbs in another order and direction: the same skeleton
    data["categories"][3]["skeleton"] = [[b, a] for a, b in reversed(data["categories"][3]["skeleton"])]
    assert spec_from_coco(data, sigmas=AP10K_SIGMAS, name="ap10k").spec == load_spec("ap10k")


def test_bad_skeleton_and_sigmas_are_named():
    # The real CrowdPose file carries COCO's 17-keypoint skeleton beside its 14 keypoints.
    with pytest.raises(ValueError, match=r"test_crowdpose.json: category 1 \(person\): skeleton entry \[16, 14\]"):
        spec_from_coco(FIXTURES / "crowdpose" / "test_crowdpose.json")
    ambiguous = _ap10k()
    for category in ambiguous["categories"]:  # neither keypoint 0 nor 17: from 0 or from 1?
        category["skeleton"] = [[a, b] for a, b in category["skeleton"] if 17 not in (a, b)]
    with pytest.raises(ValueError, match=r"category 1 \(antelope\): the skeleton uses neither keypoint 0 nor 17.*"
                                         r"--skeleton-base 0 or 1"):
        spec_from_coco(ambiguous)
    assert spec_from_coco(ambiguous, skeleton_base=1).skeleton_base == 1
    with pytest.raises(ValueError, match="the skeleton numbers keypoints from 1 .*not from 0 as --skeleton-base says"):
        spec_from_coco(AP10K_JSON, skeleton_base=0)
    data = _ap10k()
    data["categories"][0]["skeleton"] = [[0, 18]]  # 0-based, and an entry out of range
    with pytest.raises(ValueError, match=r"skeleton entry \[0, 18\] is not two distinct 0-based keypoint numbers in "
                                         r"0..16"):
        spec_from_coco(data, categories=[1])


def test_skeletons_numbered_from_zero_or_one_give_the_same_spec():
    """COCO numbers skeleton keypoints from 1, several public animal datasets from 0."""
    one_based = spec_from_coco(AP10K_JSON, sigmas=AP10K_SIGMAS, name="ap10k")
    data = _ap10k()
    for category in data["categories"]:
        category["skeleton"] = [[a - 1, b - 1] for a, b in category["skeleton"]]
    zero_based = spec_from_coco(data, sigmas=AP10K_SIGMAS, name="ap10k")
    assert (one_based.skeleton_base, zero_based.skeleton_base) == (1, 0)
    assert zero_based.spec == one_based.spec == load_spec("ap10k")
    assert "numbers keypoints from 0" in zero_based.to_yaml() and "numbers keypoints from 1" in one_based.to_yaml()
    with pytest.raises(ValueError, match="16 sigmas given for 17 keypoints"):
        spec_from_coco(AP10K_JSON, sigmas=AP10K_SIGMAS[:-1])
    with pytest.raises(ValueError, match=r"x10 form|divide those by 10"):
        spec_from_coco(AP10K_JSON, sigmas=[10 * s for s in AP10K_SIGMAS])
    with pytest.raises(ValueError, match="no 'categories'"):
        spec_from_coco({"images": [], "annotations": []})


def test_no_skeleton_gives_no_rescoring_limbs(caplog):
    data = _ap10k()
    for category in data["categories"]:
        del category["skeleton"]
    with caplog.at_level(logging.WARNING):
        spec = spec_from_coco(data).spec
    assert spec.skeleton == () and spec.rescore_limbs == () and spec.rescore_torso_limbs == ()
    assert "no skeleton" in caplog.text


def test_names_that_need_quoting_round_trip():
    data = _ap10k()
    odd = copy.deepcopy(data["categories"][0])
    odd["keypoints"][2] = "yes"  # YAML 1.1 reads a bare yes as True
    odd["keypoints"][3] = "neck: base"
    odd["keypoints"][4] = "tail #1"
    data["categories"] = [odd]
    text = spec_from_coco(data).to_yaml()
    spec = KeypointSpec.from_dict(yaml.safe_load(text))
    assert spec.keypoint_names[2:5] == ("yes", "neck: base", "tail #1")
