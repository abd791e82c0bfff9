"""dekr.inference.config: the one home of the decode defaults and the one merge of the layers over them
(class defaults <- spec <- checkpoint / run config <- user options), with errors naming the layer."""
from __future__ import annotations

from dataclasses import replace

import pytest

from dekr.data.spec import load_spec
from dekr.dataclass_config import ConfigError
from dekr.inference.config import DecodeConfig, merge_decode_options, official_test_values, resolve_decode

CLASS_DEFAULTS = DecodeConfig()


def test_layers_merge_in_the_documented_order() -> None:
    checkpoint = ("w32.ckpt", {"input_size": 640, "flip_test": False, "nms_thre": 0.1})
    user = ("--decode", {"input_size": 256, "scales": [2, 1, 0.5]})
    cfg = resolve_decode("crowdpose", checkpoint, user)
    assert cfg.input_size == 256 and cfg.scales == (2.0, 1.0, 0.5)  # user over checkpoint
    assert cfg.flip_test is False and cfg.nms_thre == 0.1  # checkpoint over spec and class defaults
    assert cfg.nms_num_thre == 7 and cfg.decrease == 0.8  # spec (official CrowdPose values) over the class
    assert (cfg.max_num_people, cfg.resize) == (CLASS_DEFAULTS.max_num_people, CLASS_DEFAULTS.resize)
    # the spec's values really differ from the class defaults: the layer is not a no-op
    assert (CLASS_DEFAULTS.nms_num_thre, CLASS_DEFAULTS.decrease) != (7, 0.8)


def test_no_layers_gives_the_spec_values_and_for_dataset_is_one_user_layer() -> None:
    assert resolve_decode("coco") == DecodeConfig(**official_test_values(load_spec("coco")))
    one_layer = resolve_decode("coco", ("x", {"flip_test": False}))
    assert DecodeConfig.for_dataset("coco", flip_test=False) == one_layer
    # another skeleton: COCO's values with nms_num_thre = K // 2
    other = replace(load_spec("coco"), name="coco_like")
    assert official_test_values(other) == {"nms_thre": 0.05, "nms_num_thre": 8, "decrease": 0.9}


def test_an_empty_or_missing_layer_changes_nothing() -> None:
    assert resolve_decode("coco", ("ckpt", {}), ("user", None)) == resolve_decode("coco")


@pytest.mark.parametrize("layers, message", [
    ([("the decode options of a.onnx (onnx)", {"flip": False})],
     r"^the decode options of a.onnx \(onnx\): unknown decode option\(s\) \['flip'\]; known: \[.*'flip_"),
    ([("ckpt", {"input_size": 512}), ("--decode", {"input_size": "big"})],
     r"^--decode: decode option 'input_size' must be int, got 'big' \(str\)"),
    ([("ckpt", {"input_size": 500}), ("--decode", {"input_size": 512})],
     r"^ckpt: decode: input_size must be a multiple of 64, got 500"),
    ([("dekr.load options", {"scales": [2, 0.5]})], r"^dekr.load options: decode: scales must contain 1"),
])
def test_errors_name_the_option_and_the_layer_it_came_from(layers, message) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_decode("coco", *layers)
    with pytest.raises(ConfigError, match=message):
        merge_decode_options(*layers)


def test_merged_options_hold_only_what_the_layers_set() -> None:
    merged = merge_decode_options(("run.yaml: model.decode", {"flip_test": False, "input_size": 256}),
                                  ("flags", {"input_size": 320}), ("--decode", None))
    assert merged == {"flip_test": False, "input_size": 320}  # no defaults: they stay in DecodeConfig
