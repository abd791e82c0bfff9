"""Model zoo: entries as data, and fetch's download / verify / cache mechanics against a local server."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dekr import zoo
from dekr.data.spec import shipped_specs
from dekr.zoo import (
    ZOO,
    DownloadError,
    HashMismatchError,
    ManualDownloadRequired,
    UnknownModelError,
    converted_path,
    download_path,
    fetch,
    fetch_extra,
    get_entry,
    list_models,
    looks_like_name,
    zoo_home,
)
from tests.helpers.zoo_server import StandInServer, sha256_hex, standin_entry

REPO_ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = os.urandom(3 << 20) + b"stand-in weights"  # a few chunks, so a cut transfer is mid-file


@pytest.fixture
def server():
    with StandInServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never touch the user's cache, and never let a developer's mirror setting leak in.
    monkeypatch.delenv(zoo.MIRROR_ENV, raising=False)
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "home"))


def _leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` other than the lock files (which filelock keeps by design)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


# ------------------------------------------------------------------------------------------------ the data
def test_entries_are_consistent() -> None:
    files_by_name: dict[str, set] = {}
    for name, entry in ZOO.items():
        assert entry.name == name
        assert entry.spec in shipped_specs()
        if entry.config is not None:
            assert (REPO_ROOT / "configs" / entry.config).is_file()
        for zfile in (entry.weights, *entry.extras.values()):
            files_by_name.setdefault(zfile.filename, set()).add(zfile)
        if entry.format == "official":
            assert entry.url is None and "HRNet/DEKR" in entry.homepage
        if entry.format == "mmpose":
            # MMPose's file names carry the first 8 hex digits of the sha256.
            assert f"_{entry.sha256}-" in entry.url and len(entry.sha256) == 8
    # One cache path, one file: W32 and W48 may share a rescoring net, but not under different hashes.
    assert all(len(files) == 1 for files in files_by_name.values()), files_by_name
    assert set(ZOO) == {
        "dekr-w32-coco", "dekr-w48-coco", "dekr-w32-crowdpose", "dekr-w48-crowdpose",
        "mmpose/dekr-w32-coco", "mmpose/dekr-w48-coco", "mmpose/dekr-w32-crowdpose", "mmpose/dekr-w48-crowdpose",
        "supergradients/dekr-w32-no-dc-coco",
    }
    sg = ZOO["supergradients/dekr-w32-no-dc-coco"]
    assert sg.config is None and sg.spec == "coco" and "rescore" in sg.extras and "sghub.deci.ai" in sg.notes


def test_list_models_rows() -> None:
    rows = list_models()
    assert [r["name"] for r in rows] == list(ZOO)
    assert {r["AP"] for r in rows if r["name"] == "dekr-w32-coco"} == {"68.0"}
    assert all(set(r) == set(rows[0]) and all(isinstance(v, str) for v in r.values()) for r in rows)


def test_home_and_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert zoo_home(tmp_path / "explicit") == tmp_path / "explicit"
    assert zoo_home() == tmp_path / "home"
    monkeypatch.delenv(zoo.HOME_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo_home() == tmp_path / "xdg" / "dekr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert zoo_home() == Path("~/.cache/dekr").expanduser()
    home = tmp_path / "h"
    assert download_path("dekr-w32-coco", home=home) == home / "downloads" / "pose_dekr_hrnetw32_coco.pth"
    assert download_path("dekr-w32-coco", "rescore", home=home).name == "final_rescore_coco_kpt.pth"
    assert converted_path("mmpose/dekr-w32-coco", home=home) == home / "converted" / "mmpose--dekr-w32-coco.ckpt"


def test_unknown_name_lists_the_zoo() -> None:
    with pytest.raises(UnknownModelError) as info:
        fetch("dekr-w64-coco")
    assert "dekr-w64-coco" in str(info.value)
    assert all(name in str(info.value) for name in ZOO)
    with pytest.raises(zoo.ZooError, match="no extra file 'nope'"):
        fetch_extra("dekr-w32-coco", "nope")


@pytest.mark.parametrize("typo,closest", [("dekr-w48-cocoo", "dekr-w48-coco"),
                                           ("mmpose/dekr-w32-crowdpse", "mmpose/dekr-w32-crowdpose")])
def test_misspelled_name_suggests_the_closest(typo: str, closest: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        get_entry(typo)
    message = str(info.value)
    assert message.startswith(f"unknown model {typo!r} (did you mean {closest!r}?); the zoo has:")
    assert all(f"\n  {name}" in message for name in ZOO)


def test_what_looks_like_a_zoo_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dekr-w32-cocoo").write_bytes(b"a file of that name")  # an existing path is a path
    named = ["dekr-w48-cocoo", "mmpose/dekr-w48-cocoo", "supergradients/dekr-w32", "dekr-w32-coco"]
    paths = ["dekr-w32-cocoo", "w32.pth", "runs/w32/last", "./dekr-w48-cocoo", "/abs/dekr-w48-coco", ""]
    assert [looks_like_name(v) for v in named] == [True] * len(named)
    assert [looks_like_name(v) for v in paths] == [False] * len(paths)


def test_the_loader_lists_the_zoo_for_a_misspelled_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The one loader (so dekr.load, evaluate, infer, convert): a misspelled zoo name is not
    reported as a checkpoint file that does not exist; scripts/convert.py's main in this process."""
    from dekr.checkpoint import ModelLoadError, load_checkpoint

    with pytest.raises(ModelLoadError, match=r"neither a file nor a model-zoo name: .*did you mean 'dekr-w48-coco'"):
        load_checkpoint("dekr-w48-cocoo")
    import convert

    out = tmp_path / "out.ckpt"
    assert convert.main(["dekr-w48-cocoo", "--out", str(out)]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: checkpoint dekr-w48-cocoo is neither a file nor a model-zoo name: "
                             "unknown model 'dekr-w48-cocoo' (did you mean 'dekr-w48-coco'?)")
    assert all(name in stderr for name in ZOO) and "does not exist" not in stderr and not out.exists()
    # a file name keeps the loader's answer: no zoo listing
    assert convert.main([str(tmp_path / "w48.pth"), "--out", str(out)]) == 1
    stderr = capsys.readouterr().err
    assert stderr == f"error: checkpoint {tmp_path / 'w48.pth'} does not exist\n"


# ------------------------------------------------------------------------------------------------ mechanics
@pytest.mark.parametrize("digits", [8, 64], ids=["prefix", "full"])
def test_download_verifies_then_hits_the_cache(server: StandInServer, tmp_path: Path, digits: int) -> None:
    server.files["/w.pth"] = PAYLOAD
    entry = standin_entry(server.url("/w.pth"), sha256_hex(PAYLOAD)[:digits])

    path = fetch(entry, progress=False)
    assert path == tmp_path / "home" / "downloads" / "standin.pth"
    assert path.read_bytes() == PAYLOAD
    assert server.requests["/w.pth"] == 1
    assert _leftovers(path.parent) == ["standin.pth", "standin.pth.sha256"]

    assert fetch(entry, progress=False) == path  # cache hit: no network
    assert server.requests["/w.pth"] == 1


def test_corrupt_cache_file_is_downloaded_again(server: StandInServer) -> None:
    server.files["/w.pth"] = PAYLOAD
    entry = standin_entry(server.url("/w.pth"), sha256_hex(PAYLOAD)[:8])
    path = fetch(entry, progress=False)
    path.write_bytes(b"bit rot")  # size and mtime change, so the sidecar no longer vouches for it

    assert fetch(entry, progress=False).read_bytes() == PAYLOAD
    assert server.requests["/w.pth"] == 2


def test_hash_mismatch_leaves_nothing(server: StandInServer, tmp_path: Path) -> None:
    server.files["/w.pth"] = PAYLOAD
    wrong = sha256_hex(b"something else")
    entry = standin_entry(server.url("/w.pth"), wrong)

    with pytest.raises(HashMismatchError) as info:
        fetch(entry, progress=False)
    message = str(info.value)
    assert server.url("/w.pth") in message and wrong in message and sha256_hex(PAYLOAD) in message
    assert _leftovers(tmp_path / "home" / "downloads") == []


def test_interrupted_transfer_then_retry(server: StandInServer, tmp_path: Path) -> None:
    server.files["/w.pth"] = PAYLOAD
    server.truncate_next.add("/w.pth")
    # No published hash: the Content-Length check alone must catch the cut.
    entry = standin_entry(server.url("/w.pth"), None)

    with pytest.raises(DownloadError, match="cut short") as info:
        fetch(entry, progress=False)
    assert server.url("/w.pth") in str(info.value)
    assert _leftovers(tmp_path / "home" / "downloads") == []

    assert fetch(entry, progress=False).read_bytes() == PAYLOAD
    assert server.requests["/w.pth"] == 2


def test_two_processes_download_once(server: StandInServer, tmp_path: Path) -> None:
    server.files["/w.pth"] = PAYLOAD
    sha = sha256_hex(PAYLOAD)
    child = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from dekr.zoo import fetch\n"
        "from tests.helpers.zoo_server import standin_entry\n"
        "print(fetch(standin_entry(sys.argv[1], sys.argv[2]), progress=False), flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), zoo.HOME_ENV: str(tmp_path / "shared")}
    args = [sys.executable, "-c", child, server.url("/w.pth"), sha[:8]]

    def start() -> subprocess.Popen:
        return subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    # Hold the first download open until the second process is blocked on the lock, so the test
    # exercises the lock rather than a cache hit after the fact.
    server.gate.clear()
    first = start()
    _wait_for(lambda: server.requests["/w.pth"] == 1, first)
    second = start()
    line = second.stderr.readline()
    while line and "waiting for" not in line and "downloading" not in line:
        line = second.stderr.readline()
    assert "waiting for standin.pth" in line, "the second process did not wait for the lock"
    server.gate.set()

    outs = [proc.communicate(timeout=20) for proc in (first, second)]
    assert [proc.returncode for proc in (first, second)] == [0, 0], outs
    paths = {Path(out.strip()) for out, _ in outs}
    assert paths == {tmp_path / "shared" / "downloads" / "standin.pth"}
    assert paths.pop().read_bytes() == PAYLOAD
    assert server.requests["/w.pth"] == 1


def _wait_for(condition, proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child never reached the server"
        time.sleep(0.02)


def test_offline_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.pth"
    with pytest.raises(DownloadError) as info:
        fetch(standin_entry(url, None), progress=False, timeout=5)
    message = str(info.value)
    assert url in message
    assert str(tmp_path / "home" / "downloads" / "standin.pth") in message  # where to put it by hand
    assert "path=" in message
    assert _leftovers(tmp_path / "home" / "downloads") == []


def test_http_error_names_the_url(server: StandInServer) -> None:
    with pytest.raises(DownloadError, match="404") as info:
        fetch(standin_entry(server.url("/missing.pth"), None), progress=False)
    assert server.url("/missing.pth") in str(info.value)


# ------------------------------------------------------------------------------------------------ manual files
def test_official_entry_explains_manual_steps_and_uses_a_placed_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = tmp_path / "home" / "downloads" / "pose_dekr_hrnetw32_coco.pth"
    with pytest.raises(ManualDownloadRequired) as info:
        fetch("dekr-w32-coco")
    message = str(info.value)
    assert "pose_dekr_hrnetw32_coco.pth" in message and "https://github.com/HRNet/DEKR" in message
    assert str(expected) in message and 'fetch("dekr-w32-coco", path=...)' in message

    expected.parent.mkdir(parents=True, exist_ok=True)
    expected.write_bytes(b"official stand-in")
    with caplog.at_level(logging.INFO, logger="dekr.zoo"):
        assert fetch("dekr-w32-coco") == expected
    assert "no published sha256" in caplog.text and sha256_hex(b"official stand-in") in caplog.text

    # A file kept elsewhere is verified and returned where it is.
    elsewhere = tmp_path / "mine.pth"
    elsewhere.write_bytes(b"rescore stand-in")
    assert fetch_extra("dekr-w32-coco", "rescore", path=elsewhere) == elsewhere


def test_manual_steps_are_complete_in_their_first_line(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The loader reports a missing rescoring net in one line (the first of the message) and goes on:
    that line alone must say where to get the file and where to put it."""
    from dekr.checkpoint import _zoo_rescore_state

    dest = tmp_path / "home" / "downloads" / "final_rescore_coco_kpt.pth"
    with pytest.raises(ManualDownloadRequired) as info:
        fetch_extra("dekr-w32-coco", "rescore")
    first = str(info.value).splitlines()[0]
    assert first.startswith("dekr-w32-coco [rescore]: final_rescore_coco_kpt.pth has no direct download "
                            "link; to provide it by hand, download final_rescore_coco_kpt.pth from ")
    assert "https://github.com/HRNet/DEKR" in first and f"put it at {dest}, " in first
    assert first.endswith('pass its location: fetch_extra("dekr-w32-coco", "rescore", path=...)')

    # the loader's warning, as a user of an official zoo entry without its rescoring net sees it
    with caplog.at_level(logging.WARNING, logger="dekr.checkpoint"):
        assert _zoo_rescore_state("dekr-w32-coco") is None
    (record,) = [r for r in caplog.records if "no rescoring net" in r.getMessage()]
    assert record.getMessage() == f"dekr-w32-coco: no rescoring net ({first})"
    assert "To provide it by hand:)" not in record.getMessage()


def test_manual_file_with_known_hash_is_verified(tmp_path: Path) -> None:
    entry = standin_entry(None, sha256_hex(PAYLOAD)[:8])
    placed = download_path(entry)
    placed.parent.mkdir(parents=True, exist_ok=True)
    placed.write_bytes(b"not the published file")
    with pytest.raises(HashMismatchError, match=sha256_hex(b"not the published file")):
        fetch(entry)
    assert placed.exists()  # the user's file is reported, not deleted

    placed.write_bytes(PAYLOAD)
    assert fetch(entry) == placed
    other = tmp_path / "other.pth"
    other.write_bytes(b"wrong")
    with pytest.raises(HashMismatchError):
        fetch(entry, path=other)


# ------------------------------------------------------------------------------------------------ mirrors
def test_mirror_serves_real_entries(server: StandInServer, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv(zoo.MIRROR_ENV, server.base)
    # The SuperGradients entry publishes no hash, so any stand-in is accepted (and its hash logged).
    server.files["/models/dekr_w32_no_dc_coco_pose.pth"] = PAYLOAD
    server.files["/models/pose_rescoring_coco_coco_pose.pth"] = b"rescore"
    sg = "supergradients/dekr-w32-no-dc-coco"
    assert fetch(sg, progress=False).read_bytes() == PAYLOAD
    assert fetch_extra(sg, "rescore", progress=False).read_bytes() == b"rescore"

    # The MMPose entries keep their real hash prefix: a stand-in cannot pass for the published file.
    mm_path = "/mmpose/v1/body_2d_keypoint/dekr/coco/dekr_hrnet-w32_8xb10-140e_coco-512x512_ac7c17bf-20221228.pth"
    server.files[mm_path] = PAYLOAD
    with pytest.raises(HashMismatchError, match="ac7c17bf"):
        fetch("mmpose/dekr-w32-coco", progress=False)
    assert server.requests[mm_path] == 1

    # An explicit url= is used as given, not rewritten by the mirror.
    server.files["/elsewhere/rescore.pth"] = b"rescore"
    fetch_extra(sg, "rescore", url=server.url("/elsewhere/rescore.pth"), home=tmp_path / "other", progress=False)
    assert server.requests["/elsewhere/rescore.pth"] == 1
