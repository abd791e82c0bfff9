"""scripts/make_spec.py: regenerates the shipped AP-10K spec byte for byte; options and errors."""
from __future__ import annotations


import pytest

from dekr.data.spec import load_spec

from tests.helpers.paths import REPO_ROOT
from tests.helpers.paths import AP10K_JSON, AP10K_SIGMAS


SHIPPED_AP10K = REPO_ROOT / "dekr" / "data" / "specs" / "ap10k.yaml"


def make_spec(*args: str):
    import make_spec as script

    return script.main([str(a) for a in args])


def test_regenerates_the_shipped_ap10k_spec(tmp_path, capsys):
    out = make_spec(AP10K_JSON, "--out", tmp_path / "ap10k.yaml", "--name", "ap10k",
                    "--sigmas", ",".join(str(s) for s in AP10K_SIGMAS))
    assert out.read_text() == SHIPPED_AP10K.read_text()
    printed = capsys.readouterr().out
    assert "spec 'ap10k': 17 keypoints, 54 categories" in printed
    assert "no side, mapped to themselves: nose, neck, root_of_tail" in printed
    assert "WARNING" not in printed


def test_categories_and_default_sigmas(tmp_path, capsys):
    out = make_spec(AP10K_JSON, "--out", tmp_path / "sub" / "cats.yaml", "--categories", "jaguar, 1")
    spec = load_spec(out)
    assert spec.category_ids == (26, 1) and spec.name == "test_ap10k" and set(spec.sigmas) == {0.05}
    assert "WARNING: no --sigmas" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--categories", "unicorn"], "no category 'unicorn'"),
    (["--sigmas", "0.1,abc"], "--sigmas: expected comma-separated numbers"),
    (["--sigmas", "0.05,0.05"], "2 sigmas given for 17 keypoints"),
])
def test_bad_options_exit_with_the_reason(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        make_spec(AP10K_JSON, "--out", tmp_path / "x.yaml", *args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_missing_annotation_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_spec(tmp_path / "nope.json", "--out", tmp_path / "x.yaml")
    assert "nope.json" in capsys.readouterr().err
