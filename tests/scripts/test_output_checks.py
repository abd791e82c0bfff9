"""Outputs that cannot be written are found before the work: a read-only file system and a full one
(real tmpfs mounts; skipped where this machine may not mount), a folder given as a file."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dekr.preflight import check_output_file

from tests.helpers.filesystems import mount_tmpfs, unmount


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    yield mount_tmpfs(tmp_path / "ro", "ro,size=1m")
    unmount(tmp_path / "ro")


@pytest.fixture
def full_fs(tmp_path: Path) -> Iterator[Path]:
    where = mount_tmpfs(tmp_path / "full", "size=256k")
    (where / "filler").write_bytes(b"x" * (256 * 1024 - 8192))
    yield where
    unmount(where)


def test_output_checks_name_the_path_and_the_cause(tmp_path: Path, read_only_fs: Path, full_fs: Path) -> None:
    assert check_output_file(tmp_path / "new" / "deeper" / "out.json", "--out") == []
    assert not (tmp_path / "new").exists()  # nothing created
    (problem,) = check_output_file(read_only_fs / "sub" / "out.ckpt", "--out")
    assert problem == (f"--out {read_only_fs / 'sub' / 'out.ckpt'} cannot be written: {read_only_fs} is not writable "
                       "(read-only file system or permissions)")
    (problem,) = check_output_file(full_fs / "out.ckpt", "--out")
    assert problem.startswith(f"--out {full_fs / 'out.ckpt'} cannot be written: ") and "MiB free" in problem
    assert check_output_file(full_fs / "small.json", "--out", min_free_bytes=1) == []
    (problem,) = check_output_file(tmp_path, "--out")
    assert problem == f"--out {tmp_path} is a folder; give a file name"


def test_scripts_refuse_an_unwritable_out_before_working(tmp_path: Path, read_only_fs: Path, capsys) -> None:
    import convert
    import evaluate
    import export

    out = read_only_fs / "results.json"
    with pytest.raises(SystemExit) as stopped:  # before any model is built or image read
        evaluate.main(["--config", "demo.yaml", "--random-init", "--out", str(out)])
    assert stopped.value.code == 2
    assert f"error: --out {out} cannot be written: {read_only_fs} is not writable" in capsys.readouterr().err

    missing = tmp_path / "no_such.ckpt"  # not read: the output is checked first
    assert convert.main([str(missing), "--out", str(read_only_fs / "w32.ckpt")]) == 1
    assert f"--out {read_only_fs / 'w32.ckpt'} cannot be written" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=f"error: --out {read_only_fs / 'w32.onnx'} cannot be written"):
        export.main(["--ckpt", str(missing), "--out", str(read_only_fs / "w32.onnx")])
