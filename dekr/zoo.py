"""Model zoo: published DEKR weights, downloaded once, verified, cached.

Every entry is plain data (:class:`ZooEntry`): where the file comes from, its hash, the keypoint spec
and run config it converts to, the AP its publisher reports (and under which protocol) and the
licence of the weights. :func:`fetch` turns a name into a verified local file::

    from dekr.zoo import fetch, fetch_extra
    weights = fetch("mmpose/dekr-w32-coco")                         # downloads once, then cache hits
    rescore = fetch_extra("supergradients/dekr-w32-no-dc-coco", "rescore")
    weights = fetch("dekr-w32-coco", path="~/Downloads/pose_dekr_hrnetw32_coco.pth")  # manual file

Cache layout (``$DEKR_HOME``, default ``$XDG_CACHE_HOME/dekr`` or ``~/.cache/dekr``)::

    <home>/downloads/<file name>          raw files, exactly as published
    <home>/downloads/<file name>.sha256   JSON sidecar written after verification (hash, size, mtime)
    <home>/downloads/<file name>.lock     file lock serialising check + download across processes
    <home>/converted/                     reserved for the loader (see :func:`converted_path`)

Guarantees: a download goes to a temporary file in the same folder, is checked (length and hash),
fsynced and only then renamed into place, so an interrupted or corrupt transfer never leaves a file
that looks valid. A file lock around check + download makes concurrent processes (DDP ranks, two
jobs sharing a cache) download once; the others wait and then hit the cache.

Mirrors: ``DEKR_ZOO_MIRROR=https://mirror.example`` replaces the scheme and host of every URL (the
path is kept), or pass ``url=`` to :func:`fetch` for one file. The expected hash is never replaced.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import http.client
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import filelock

from dekr.file_publish import publish

logger = logging.getLogger(__name__)

__all__ = [
    "ZOO",
    "DownloadError",
    "HashMismatchError",
    "ManualDownloadRequired",
    "UnknownModelError",
    "ZooEntry",
    "ZooError",
    "ZooFile",
    "converted_path",
    "download_path",
    "fetch",
    "fetch_extra",
    "file_lock",
    "get_entry",
    "list_models",
    "looks_like_name",
    "zoo_home",
]

MIRROR_ENV = "DEKR_ZOO_MIRROR"
HOME_ENV = "DEKR_HOME"
DEFAULT_TIMEOUT_S = 60.0
_CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar

WeightsFormat = Literal["official", "mmpose", "supergradients"]


# ------------------------------------------------------------------------------------------------ errors
class ZooError(RuntimeError):
    """Base class of every model-zoo error."""


class UnknownModelError(ZooError, LookupError):
    """The name is not in :data:`ZOO`; the message lists the known names."""


class ManualDownloadRequired(ZooError):
    """The file has no direct link (or could not be found locally); the message says what to do."""


class DownloadError(ZooError):
    """The transfer failed (unreachable, HTTP error, cut short); nothing valid was left behind."""


class HashMismatchError(ZooError):
    """A file's sha256 differs from the published one; the message names source, expected and actual."""


# ------------------------------------------------------------------------------------------------ entries
@dataclass(frozen=True)
class ZooFile:
    """One published file.

    Attributes:
        filename: name under ``<home>/downloads/`` (the publisher's own file name, so a user who
            downloaded it by hand can drop it in unchanged).
        url: direct download link, or ``None`` where the publisher offers none (Google Drive /
            OneDrive folders): then the file must be provided by hand.
        sha256: the full lowercase hex digest, or a prefix of it (at least 8 hex digits, e.g. the
            ``ac7c17bf`` MMPose puts in its file names), or ``None`` if nobody publishes one.
    """

    filename: str
    url: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or self.filename.startswith("."):
            raise ValueError(f"ZooFile.filename must be a plain file name, got {self.filename!r}")
        if self.sha256 is not None:
            digest = self.sha256.lower()
            if len(digest) < 8 or len(digest) > 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{self.filename}: sha256 must be 8-64 hex digits, got {self.sha256!r}")
            object.__setattr__(self, "sha256", digest)


@dataclass(frozen=True)
class ZooEntry:
    """A set of published DEKR weights and what they mean.

    Attributes:
        name: zoo name (``dekr-w32-coco``, ``mmpose/dekr-w32-coco``, ...).
        format: checkpoint layout, i.e. which converter reads it.
        weights: the weights file.
        spec: keypoint spec name (shipped in ``dekr/data/specs/<spec>.yaml``).
        config: our run config the weights convert to (``configs/<config>``), or ``None`` where
            none of ours has the same architecture.
        ap: published AP in percent, or ``None`` if not published.
        ap_protocol: dataset split and test-time settings behind ``ap``.
        ap_source: where ``ap`` is published.
        licence: licence of the weights, as far as the publisher states one.
        homepage: where a human finds the file (used in the manual-download instructions).
        extras: further files of the entry by key, e.g. ``"rescore"`` (the rescoring net).
        notes: anything a user should know (broken upstream links, deviations).
    """

    name: str
    format: WeightsFormat
    weights: ZooFile
    spec: str
    config: str | None
    ap: float | None
    ap_protocol: str
    ap_source: str
    licence: str
    homepage: str
    extras: Mapping[str, ZooFile] = field(default_factory=dict, hash=False)
    notes: str = ""

    @property
    def url(self) -> str | None:
        """Direct link of the weights file (``None``: provide the file by hand)."""
        return self.weights.url

    @property
    def sha256(self) -> str | None:
        """Published sha256 (full or prefix) of the weights file."""
        return self.weights.sha256


_OFFICIAL_HOME = "https://github.com/HRNet/DEKR#main-results"
# The official README's zoo is a OneDrive folder (README "Quick start", step 6) laid out as
# model/pose_coco/, model/pose_crowdpose/ and model/rescore/; no direct links, no published hashes.
_OFFICIAL_WHERE = (f"the HRNet/DEKR model zoo ({_OFFICIAL_HOME}; the OneDrive folder linked in the README's "
                   "'Quick start' step 6)")
_OFFICIAL_LICENCE = "MIT (HRNet/DEKR LICENSE; the README states no separate terms for the weights)"
_OFFICIAL_PROTOCOL_COCO = "COCO val2017, single scale, flip test, rescoring net"
_OFFICIAL_PROTOCOL_CROWDPOSE = "CrowdPose test, single scale, flip test, rescoring net"

_MMPOSE_BASE = "https://download.openmmlab.com/mmpose/v1/body_2d_keypoint/dekr/"
_MMPOSE_LICENCE = "Apache-2.0 (MMPose project licence; no separate terms for the weights)"
_MMPOSE_COCO_MD = ("https://github.com/open-mmlab/mmpose/blob/main/configs/body_2d_keypoint/dekr/coco/"
                   "hrnet_coco.md")
_MMPOSE_CROWDPOSE_MD = ("https://github.com/open-mmlab/mmpose/blob/main/configs/body_2d_keypoint/dekr/"
                        "crowdpose/hrnet_crowdpose.md")
# MMPose's DEKR test_cfg: multiscale_test=False, flip_test=True, and the head carries a rescore net.
_MMPOSE_PROTOCOL = "single scale, flip test, rescoring net (MMPose test_cfg)"

_SG_BASE = "https://sg-hub-nv.s3.amazonaws.com/models/"


def _official(width: int, dataset: Literal["coco", "crowdpose"], ap: float) -> ZooEntry:
    # The official files are named pose_dekr_hrnetw32_coco.pth etc. (README step 6 tree).
    rescore = "final_rescore_coco_kpt.pth" if dataset == "coco" else "final_rescore_crowd_pose_kpt.pth"
    return ZooEntry(
        name=f"dekr-w{width}-{dataset}",
        format="official",
        weights=ZooFile(f"pose_dekr_hrnetw{width}_{dataset}.pth"),
        spec=dataset,
        config=f"w{width}_{dataset}.yaml",
        ap=ap,
        ap_protocol=_OFFICIAL_PROTOCOL_COCO if dataset == "coco" else _OFFICIAL_PROTOCOL_CROWDPOSE,
        ap_source=_OFFICIAL_HOME,
        licence=_OFFICIAL_LICENCE,
        homepage=_OFFICIAL_WHERE,
        extras={"rescore": ZooFile(rescore)},
    )


def _mmpose(width: int, dataset: Literal["coco", "crowdpose"], file: str, ap: float, protocol: str,
            source: str) -> ZooEntry:
    # MMPose names files <config>_<first 8 hex digits of sha256>-<date>.pth: verify that prefix.
    sha256_prefix = file.rsplit("_", 1)[1].split("-", 1)[0]
    return ZooEntry(
        name=f"mmpose/dekr-w{width}-{dataset}",
        format="mmpose",
        weights=ZooFile(file.rsplit("/", 1)[1], url=_MMPOSE_BASE + file, sha256=sha256_prefix),
        spec=dataset,
        config=f"w{width}_{dataset}.yaml",
        ap=ap,
        ap_protocol=protocol,
        ap_source=source,
        licence=_MMPOSE_LICENCE,
        homepage=source,
    )


ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    # Official HRNet/DEKR (README "Main results", single-scale tables; the README notes flip test).
    _official(32, "coco", 68.0),
    _official(48, "coco", 71.0),
    _official(32, "crowdpose", 65.7),
    _official(48, "crowdpose", 67.3),
    # MMPose 1.x DEKR zoo (configs/body_2d_keypoint/dekr/*/hrnet_*.md and the metafiles hrnet_*.yml).
    _mmpose(32, "coco", "coco/dekr_hrnet-w32_8xb10-140e_coco-512x512_ac7c17bf-20221228.pth", 68.6,
            f"COCO val2017, 512x512, {_MMPOSE_PROTOCOL}", _MMPOSE_COCO_MD),
    _mmpose(48, "coco", "coco/dekr_hrnet-w48_8xb10-140e_coco-640x640_74796c32-20230124.pth", 71.4,
            f"COCO val2017, 640x640, {_MMPOSE_PROTOCOL}", _MMPOSE_COCO_MD),
    # One revision of hrnet_crowdpose.md links the W32 file as "...8xb10-140e_crowdpose..."; the
    # metafile hrnet_crowdpose.yml and later revisions say "300e", which matches the config name.
    _mmpose(32, "crowdpose", "crowdpose/dekr_hrnet-w32_8xb10-300e_crowdpose-512x512_147bae97-20221228.pth",
            66.3, f"CrowdPose test, 512x512, {_MMPOSE_PROTOCOL}", _MMPOSE_CROWDPOSE_MD),
    _mmpose(48, "crowdpose", "crowdpose/dekr_hrnet-w48_8xb5-300e_crowdpose-640x640_4ea6031e-20230128.pth",
            67.9, f"CrowdPose test, 640x640, {_MMPOSE_PROTOCOL}", _MMPOSE_CROWDPOSE_MD),
    ZooEntry(
        name="supergradients/dekr-w32-no-dc-coco",
        format="supergradients",
        # No published hash; the first download logs the sha256 it saw so it can be pinned here.
        weights=ZooFile("dekr_w32_no_dc_coco_pose.pth", url=_SG_BASE + "dekr_w32_no_dc_coco_pose.pth"),
        spec="coco",
        # SG's DEKR-W32-NO-DC replaces the adaptive (deformable) convolutions by plain ones so that it
        # exports to ONNX: none of our configs has that head, so there is no config to convert to.
        config=None,
        # SG model zoo table: 63.08 (no TTA) / 64.96 (flip) / 67.32 (flip + rescoring). The recipe
        # coco2017_pose_dekr_w32_no_dc.yaml says 67.34 for the last; we record the model zoo's number.
        ap=67.32,
        ap_protocol="COCO val2017, 640x640, single scale, flip test, SG rescoring net",
        ap_source="https://github.com/Deci-AI/super-gradients/blob/master/documentation/source/model_zoo.md",
        licence=("Apache-2.0 (SuperGradients project licence; unlike YOLO-NAS, DEKR weights have no separate "
                 "licence; SG warns they may carry terms of the training data: "
                 "https://cocodataset.org/#termsofuse)"),
        homepage="https://github.com/Deci-AI/super-gradients/blob/master/documentation/source/model_zoo.md",
        extras={"rescore": ZooFile("pose_rescoring_coco_coco_pose.pth",
                                   url=_SG_BASE + "pose_rescoring_coco_coco_pose.pth")},
        notes=("super-gradients <= 3.7.1 points at https://sghub.deci.ai/models/..., which no longer "
               "resolves; SG moved the files to sg-hub-nv.s3.amazonaws.com (commit e0ccacf, Sept 2024)."),
    ),
)}


# ------------------------------------------------------------------------------------------------ paths
def zoo_home(home: str | Path | None = None) -> Path:
    """The cache folder: ``home``, else ``$DEKR_HOME``, else ``$XDG_CACHE_HOME/dekr``, else ``~/.cache/dekr``."""
    if home is None:
        home = os.environ.get(HOME_ENV) or None
    if home is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or None
        home = Path(xdg) / "dekr" if xdg else Path("~/.cache/dekr")
    return Path(home).expanduser()


def get_entry(name: str | ZooEntry) -> ZooEntry:
    """The entry called ``name`` (an entry passes through, so callers may define their own)."""
    if isinstance(name, ZooEntry):
        return name
    try:
        return ZOO[name]
    except KeyError:
        known = "\n  ".join(sorted(ZOO))
        closest = difflib.get_close_matches(name, ZOO, n=1)
        hint = f" (did you mean {closest[0]!r}?)" if closest else ""
        raise UnknownModelError(f"unknown model {name!r}{hint}; the zoo has:\n  {known}") from None


def looks_like_name(value: str) -> bool:
    """Whether ``value``, given where a checkpoint file or a zoo name is taken, reads as a zoo name.

    So a misspelled name (``dekr-w48-cocoo``) can be answered with the zoo's names rather than "no
    such file": it is not an existing path, has no file suffix (``.pth``, ``.ckpt``) and no folder
    other than a publisher's (``mmpose/dekr-w48-coco``; ``runs/x`` is a path).
    """
    path = Path(value)
    if not value or path.exists() or path.suffix:
        return False
    folder, _, _ = value.rpartition("/")
    return folder == "" or folder in {name.split("/", 1)[0] for name in ZOO if "/" in name}


def download_path(name: str | ZooEntry, extra: str | None = None, *, home: str | Path | None = None) -> Path:
    """Where the raw weights file (or the extra file ``extra``) of ``name`` lives in the cache."""
    return zoo_home(home) / "downloads" / _zoo_file(get_entry(name), extra).filename


def converted_path(name: str | ZooEntry, *, home: str | Path | None = None) -> Path:
    """Where the loader keeps ``name`` converted to our checkpoint layout: ``<home>/converted/<name>.ckpt``.

    ``/`` in the name becomes ``--`` so every converted file sits in one flat folder. Guard writes to it
    with :func:`file_lock` (as :func:`fetch` does for downloads).
    """
    entry = get_entry(name)
    return zoo_home(home) / "converted" / f"{entry.name.replace('/', '--')}.ckpt"


@contextlib.contextmanager
def file_lock(path: str | Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an inter-process lock on ``path`` (the lock file is ``<path>.lock``, next to it).

    Use it around "check whether the file is there, else make it", so concurrent processes (DDP ranks,
    jobs sharing a cache) do the work once. It blocks until the lock is free, or raises
    ``filelock.Timeout`` after ``timeout`` seconds. Like any ``flock`` it may not hold on NFS mounts
    without lock support; the atomic rename still keeps a half-written file from ever looking valid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        # Say why we are stalled: another process is downloading or converting the same file.
        logger.info("waiting for %s (another process holds %s)", path.name, lock.lock_file)
        lock.acquire(timeout=-1 if timeout is None else timeout)
    try:
        yield
    finally:
        lock.release()


# ------------------------------------------------------------------------------------------------ fetching
def fetch(name: str | ZooEntry, *, home: str | Path | None = None, progress: bool = True,
          path: str | Path | None = None, url: str | None = None,
          timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """The verified local weights file of ``name``, downloaded into the cache on first use.

    Args:
        name: zoo name (see :data:`ZOO`) or a :class:`ZooEntry`.
        home: cache folder (default: :func:`zoo_home`).
        progress: show a download progress bar on stderr.
        path: a file the user already has (e.g. an official file fetched by hand); it is verified
            against the published hash (when one is known) and returned as is, not copied.
        url: download from here instead of the entry's URL (a mirror); the hash stays the entry's.
        timeout: socket timeout in seconds for the download.

    Returns:
        The path of the verified file.

    Raises:
        UnknownModelError: ``name`` is not in the zoo.
        ManualDownloadRequired: no direct link and no file in the cache; the message says what to do.
        DownloadError: the server was unreachable, answered an error or cut the transfer short.
        HashMismatchError: the file's sha256 does not match the published one.
    """
    entry = get_entry(name)
    return _fetch_file(entry, None, home=home, progress=progress, path=path, url=url, timeout=timeout)


def fetch_extra(name: str | ZooEntry, extra: str, *, home: str | Path | None = None, progress: bool = True,
                path: str | Path | None = None, url: str | None = None,
                timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Like :func:`fetch`, for the entry's extra file ``extra`` (e.g. ``"rescore"``, the rescoring net)."""
    entry = get_entry(name)
    return _fetch_file(entry, extra, home=home, progress=progress, path=path, url=url, timeout=timeout)


def list_models() -> list[dict[str, str]]:
    """One row per entry for the README table: every value already formatted as text."""
    rows = []
    for entry in ZOO.values():
        rows.append({
            "name": entry.name,
            "format": entry.format,
            "config": entry.config or "none (see notes)",
            "spec": entry.spec,
            "AP": "n/a" if entry.ap is None else str(entry.ap),
            "protocol": entry.ap_protocol,
            "download": entry.url or "manual (see homepage)",
            "sha256": entry.sha256 or "not published",
            "extras": ", ".join(sorted(entry.extras)) or "-",
            "licence": entry.licence,
            "source": entry.ap_source,
        })
    return rows


def _zoo_file(entry: ZooEntry, extra: str | None) -> ZooFile:
    if extra is None:
        return entry.weights
    try:
        return entry.extras[extra]
    except KeyError:
        known = ", ".join(sorted(entry.extras)) or "none"
        raise ZooError(f"{entry.name} has no extra file {extra!r} (extras: {known})") from None


def _fetch_file(entry: ZooEntry, extra: str | None, *, home: str | Path | None, progress: bool,
                path: str | Path | None, url: str | None, timeout: float) -> Path:
    zfile = _zoo_file(entry, extra)
    label = entry.name if extra is None else f"{entry.name} [{extra}]"
    if path is not None:
        return _verify_user_file(Path(path).expanduser(), zfile, label)

    dest = zoo_home(home) / "downloads" / zfile.filename
    # An explicit url= is taken as is; the mirror rewrites only the entry's own links.
    source = url if url is not None else _apply_mirror(zfile.url)
    with file_lock(dest):
        if dest.is_file() and _cache_valid(dest, zfile, label, remove_if_bad=source is not None):
            return dest
        if source is None:
            raise ManualDownloadRequired(_manual_steps(entry, extra, zfile, dest, reason="has no direct download link"))
        _download(source, dest, zfile, label=label, progress=progress, timeout=timeout,
                  manual=_manual_steps(entry, extra, zfile, dest, reason="could not be downloaded", url=source))
    return dest


def _apply_mirror(url: str | None) -> str | None:
    """Replace scheme + host of ``url`` by ``$DEKR_ZOO_MIRROR`` (which may carry a path prefix)."""
    mirror = os.environ.get(MIRROR_ENV)
    if url is None or not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    rest = urllib.parse.urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    return mirror.rstrip("/") + rest


def _manual_steps(entry: ZooEntry, extra: str | None, zfile: ZooFile, dest: Path, *, reason: str,
                  url: str | None = None) -> str:
    """What to do about a file that cannot be fetched.

    The first line alone is complete (where to get the file, where to put it), because callers that
    report one line keep only it: the loader warns "no rescoring net (<first line>)" and goes on. The
    further lines add the hash check, the mirror and the entry's notes.
    """
    label = entry.name if extra is None else f"{entry.name} [{extra}]"
    where = url or entry.homepage
    call = (f'fetch("{entry.name}", path=...)' if extra is None
            else f'fetch_extra("{entry.name}", "{extra}", path=...)')
    first = (f"{label}: {zfile.filename} {reason}; to provide it by hand, download {zfile.filename} from "
             f"{where} and put it at {dest}, or keep it elsewhere and pass its location: {call}")
    lines = [first]
    if zfile.sha256:
        lines.append(f"  its sha256 must start with {zfile.sha256}")
    if url is not None:
        lines.append(f"  or point ${MIRROR_ENV} at a mirror (it replaces the scheme and host of the URL)")
    if entry.notes:
        lines.append(f"  note: {entry.notes}")
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(actual: str, expected: str | None) -> bool:
    return expected is None or actual.startswith(expected)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cache_valid(dest: Path, zfile: ZooFile, label: str, *, remove_if_bad: bool) -> bool:
    """Is the cached ``dest`` the published file? Cheap when a matching sidecar vouches for it.

    A sidecar is written only after a full hash check and records the file's size and mtime, so an
    unchanged file need not be re-hashed (hundreds of MB) on every start. A file without a matching
    sidecar (dropped in by hand, or touched since) is hashed in full.
    """
    stat = dest.stat()
    sidecar = _sidecar(dest)
    try:
        record = json.loads(sidecar.read_text())
        if (record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns
                and _matches(record["sha256"], zfile.sha256)):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no sidecar, or an unreadable one: fall back to hashing the file
    actual = _sha256(dest)
    if _matches(actual, zfile.sha256):
        if zfile.sha256 is None:
            logger.info("%s: no published sha256; accepting %s (sha256 %s)", label, dest, actual)
        _write_sidecar(dest, actual)
        return True
    sidecar.unlink(missing_ok=True)
    if remove_if_bad:
        # A corrupt cache file of a downloadable entry is ours to replace.
        logger.warning("%s: cached %s has sha256 %s, expected %s...; downloading it again",
                       label, dest, actual, zfile.sha256)
        dest.unlink()
        return False
    raise HashMismatchError(f"{label}: {dest} has sha256 {actual}, expected one starting with {zfile.sha256}; "
                            "it is not the published file (replace or remove it)")


def _write_sidecar(dest: Path, actual: str) -> None:
    stat = dest.stat()
    record = {"sha256": actual, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _atomic_write_text(_sidecar(dest), json.dumps(record) + "\n")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify_user_file(path: Path, zfile: ZooFile, label: str) -> Path:
    if not path.is_file():
        raise ManualDownloadRequired(f"{label}: {path} is not a file")
    actual = _sha256(path)
    if not _matches(actual, zfile.sha256):
        raise HashMismatchError(f"{label}: {path} has sha256 {actual}, expected one starting with "
                                f"{zfile.sha256}; it is not the published {zfile.filename}")
    if zfile.sha256 is None:
        logger.info("%s: no published sha256; accepting %s (sha256 %s)", label, path, actual)
    return path


def _download(url: str, dest: Path, zfile: ZooFile, *, label: str, progress: bool, timeout: float,
              manual: str) -> None:
    """Download ``url`` to ``dest`` via a temporary file; only a complete, verified file is renamed."""
    from tqdm.auto import tqdm  # only needed when something is actually downloaded

    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: downloading %s to %s", label, url, dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "dekr-lightning"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length_header = response.headers.get("Content-Length")
                    expected_size = int(length_header) if length_header is not None else None
                    with tqdm(total=expected_size, unit="B", unit_scale=True, unit_divisor=1024,
                              desc=dest.name, file=sys.stderr, disable=not progress, leave=False) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                # URLError: unreachable / refused / HTTP error; OSError: reset or timeout mid-transfer;
                # HTTPException: a broken response; ValueError: a malformed URL.
                reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
                raise DownloadError(f"could not download {url}: {reason}\n{manual}") from exc
            # http.client returns a short body without complaint when the server closes early, so the
            # length check is ours to do (it also protects entries without a published hash).
            if expected_size is not None and received != expected_size:
                raise DownloadError(f"download of {url} was cut short: {received} of {expected_size} bytes\n"
                                    f"{manual}")
            actual = digest.hexdigest()
            if not _matches(actual, zfile.sha256):
                raise HashMismatchError(f"{label}: {url} has sha256 {actual}, expected one starting with "
                                        f"{zfile.sha256}; the download was discarded")
            out.flush()
            os.fsync(out.fileno())
        publish(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    _write_sidecar(dest, actual)
    if zfile.sha256 is None:
        logger.info("%s: no published sha256; downloaded %s has sha256 %s", label, dest.name, actual)


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory, which is fine.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
