"""HRNet backbone from timm, returning DEKR's 1/4-resolution concatenated feature map, and its
ImageNet weights: timm's hub files or a local file, loaded strictly.

Key layouts: timm's classification HRNet (``timm.create_model("hrnet_w32")``) and the official
HRNet-Image-Classification model (``lib/models/cls_hrnet.py``, whose files are
``hrnetv2_w32_imagenet_pretrained.pth`` and timm's older ``hrnet_w32-36af842e.pth``) have the same
key names and shapes, checked for W18-small v1/v2, W32 and W48 (timm writes ``nn.Identity`` where
the official code keeps ``None``; neither holds tensors). The feature body used here is that model
without its classification head (``incre_modules``, ``downsamp_modules``, ``final_layer``,
``classifier``), which is also the official DEKR backbone's layout. So one strict loader serves
every source: a file may leave out exactly the classification head, and BatchNorm's
``num_batches_tracked`` (absent from files written before PyTorch 0.4.1, and unused here: BN
momentum is set), nothing else.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
import timm
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: timm HRNet variants: the official W32/W48 and the smaller ones for quick experiments.
HRNET_VARIANTS = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w30", "hrnet_w32",
                  "hrnet_w40", "hrnet_w44", "hrnet_w48", "hrnet_w64")
#: The variants DEKR publishes results for, every one of them trained from the ImageNet HRNet.
PUBLISHED_VARIANTS = ("hrnet_w32", "hrnet_w48")

#: The config option that takes a local ImageNet file, named in every error about the weights.
PRETRAINED_OPTION = "model.net.pretrained_backbone"
#: Top-level modules of the classification head: the only part of an ImageNet file left unused.
CLASSIFIER_MODULES = ("incre_modules", "downsamp_modules", "final_layer", "classifier")
#: Wrappers that training scripts put around a state dict (``{"state_dict": ...}``, ``{"model": ...}``).
STATE_DICT_WRAPPERS = ("state_dict", "model")
#: Seconds to wait for a TCP connection to the hub before calling it unreachable.
HUB_CONNECT_TIMEOUT_S = 5.0
#: Files timm looks for in a hub repository, in its order (safetensors first).
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: How many keys an error lists before it says "and N more".
MAX_LISTED = 20

_FEATURE_KWARGS = {"features_only": True, "feature_location": "", "out_indices": (1, 2, 3, 4)}


class PretrainedBackboneError(ValueError):
    """The configured ImageNet backbone weights cannot be used: a missing or unreadable file, a
    file of another layout or width, or timm's hub weights neither cached nor downloadable."""


def _check_name(name: str) -> None:
    if name not in HRNET_VARIANTS:
        raise ValueError(f"backbone {name!r} is not a timm HRNet; choose one of {HRNET_VARIANTS}")


def create_body(name: str) -> nn.Module:
    """timm's HRNet feature body: raw branch outputs at strides 4, 8, 16, 32, no weights loaded."""
    _check_name(name)
    return timm.create_model(name, pretrained=False, **_FEATURE_KWARGS)


class HRNetBackbone(nn.Module):
    """timm HRNet with the raw branch outputs, upsampled to 1/4 and concatenated.

    ``feature_location=''`` selects the raw branches (32/64/128/256 channels at strides 4-32
    for W32) instead of timm's classification "incre" features; ``out_indices=(1, 2, 3, 4)``
    drops the stride-2 stem output. The state dict under ``body.`` has exactly the official
    DEKR backbone keys.

    Args:
        name: a timm HRNet name, see :data:`HRNET_VARIANTS`.
        pretrained: ``False`` (timm's own init); ``True`` for timm's ImageNet weights (from the
            HF cache, downloaded once when the network allows); or a path to a local ImageNet
            HRNet file (timm or HRNet-Image-Classification layout). :class:`DEKRNet` builds
            with ``False`` and calls :meth:`load_pretrained` after its own initialisation, so
            that the initialisation cannot overwrite the ImageNet weights.
    """

    def __init__(self, name: str = "hrnet_w32", pretrained: bool | str = False) -> None:
        super().__init__()
        self.name = name
        self.body = create_body(name)
        self.branch_channels: list[int] = list(self.body.feature_info.channels())
        self.out_channels = sum(self.branch_channels)
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, pretrained: bool | str) -> str:
        """Load ImageNet weights strictly into the body; returns (and logs) where they came from.

        Raises:
            PretrainedBackboneError: see :func:`ensure_pretrained_backbone`; also for a file
                whose keys or shapes do not fit this variant (listing them).
        """
        path, source = _resolve_source(self.name, pretrained)
        assert path is not None  # downloaded when not cached
        own = self.body.state_dict()
        state, filled = match_backbone_state(read_state_dict(path), own, str(path), self.name)
        self.body.load_state_dict(state, strict=True)
        note = f"; {filled} num_batches_tracked absent from the file, kept at 0" if filled else ""
        log.info("backbone %s: loaded %d ImageNet tensors from %s%s", self.name, len(own) - filled, source, note)
        return source

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, sum(branch_channels), H/4, W/4); H and W multiples of 32."""
        branches = self.body(images)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [
            F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]
        ]
        return torch.cat(upsampled, dim=1)


def ensure_pretrained_backbone(name: str, pretrained: bool | str, download: bool = True) -> str:
    """Make sure the configured ImageNet weights can be loaded; call once before training starts.

    Meant for the launcher, before any training process spawns: every process then finds the
    weights locally, and a run that cannot have them fails at once with one clear message.

    * ``False``: nothing to check (the backbone starts from scratch).
    * ``True``: timm's hub file for ``name`` is in the Hugging Face cache, or is downloaded into
      it now (with ``download``; without, it is enough that the hub is reachable: a launch that
      stops for other problems downloads nothing); without network this fails within seconds (a
      short TCP probe instead of huggingface_hub's ~25 s of retries per file), naming the hub file
      and the option.
    * a path: the file exists, reads, and its keys and shapes are this variant's backbone
      (the whole file is read once, a few seconds for W48).

    Returns:
        One line saying where the weights come from, e.g. ``"hrnet_w32 ImageNet weights from
        /data/hrnetv2_w32_imagenet_pretrained.pth (1830 backbone tensors)"``, or ``"hrnet_w32
        ImageNet weights from timm's hub timm/hrnet_w32.ms_in1k (model.safetensors, cached at
        ...)"``; for ``False``, ``"hrnet_w32 from scratch (...)"``.

    Raises:
        PretrainedBackboneError: with the file or hub id, the cause, and the option to set.
        ValueError: ``name`` is not an HRNet variant.
    """
    _check_name(name)
    if not pretrained:
        return f"{name} from scratch (no ImageNet weights: {PRETRAINED_OPTION} is false)"
    path, source = _resolve_source(name, pretrained, download)
    if path is None:
        return f"{name} ImageNet weights from {source}"
    # Keys and shapes only: a body on the meta device allocates no memory.
    with torch.device("meta"):
        own = create_body(name).state_dict()
    state, filled = match_backbone_state(read_state_dict(path), own, str(path), name)
    note = f", {filled} num_batches_tracked absent" if filled else ""
    return f"{name} ImageNet weights from {source} ({len(state) - filled} backbone tensors{note})"


def _resolve_source(name: str, pretrained: bool | str, download: bool = True) -> tuple[Path | None, str]:
    """(local file to read, description of the source) for ``pretrained`` True or a path; the
    file is None for hub weights that are not cached and not to be downloaded now."""
    if pretrained is True:
        path, repo_id = _hub_weights_file(name, download)
        if path is None:
            return None, f"timm's hub {repo_id} (reachable, not cached yet: downloaded at the next launch)"
        return path, f"timm's hub {repo_id} ({path.name}, cached at {path})"
    if not isinstance(pretrained, (str, os.PathLike)):
        raise PretrainedBackboneError(
            f"{PRETRAINED_OPTION} must be false, true or a file path, got {pretrained!r}")
    path = Path(pretrained).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise PretrainedBackboneError(
            f"ImageNet backbone file {path} {what}; point {PRETRAINED_OPTION} at an ImageNet HRNet file, "
            f"e.g. --{PRETRAINED_OPTION} /path/to/hrnetv2_{name.removeprefix('hrnet_')}_imagenet_pretrained.pth "
            f"(HRNet-Image-Classification) or a timm {name} state dict, or set it to true for timm's hub weights")
    return path, str(path)


def _hub_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at
    import), so that a caller or test that sets HF_HOME / HF_HUB_CACHE later is obeyed."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return hf_constants.HF_HUB_CACHE


def _hub_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().upper() in {"1", "ON", "YES", "TRUE"} or bool(hf_constants.HF_HUB_OFFLINE)


def _hub_unreachable(endpoint: str) -> str | None:
    """Why the hub cannot be reached (None: a TCP connection opened, or a proxy is configured).

    huggingface_hub retries an unreachable host with back-off (about 25 s per file, two files
    for timm); one short connection attempt tells the same within seconds. With a proxy
    configured a direct connection says nothing, so the download is left to try.
    """
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_CONNECT_TIMEOUT_S):
            return None
    except OSError as err:
        return f"cannot connect to {host}:{port} ({err})"


def _hub_weights_file(name: str, download: bool = True) -> tuple[Path | None, str]:
    """timm's ImageNet file for ``name`` in the local HF cache, downloading it if need be.

    Returns (local path, hub repository id); the path is None when the file is not cached and
    ``download`` is false (the hub is then only probed). Raises PretrainedBackboneError without network.
    """
    cfg = timm.models.get_pretrained_cfg(name)
    repo_id = cfg.hf_hub_id if cfg is not None else None
    if not repo_id:
        raise PretrainedBackboneError(
            f"timm has no hub weights for {name}; set --{PRETRAINED_OPTION} /path/to/{name}_imagenet.pth")
    repo_id, _, revision = repo_id.partition("@")
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_WEIGHT_FILES
    cache_dir = _hub_cache_dir()
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir,
                                                        revision=revision or None)
        if isinstance(cached, str):
            return Path(cached), repo_id

    wanted = f"{hf_constants.ENDPOINT}/{repo_id}/resolve/{revision or 'main'}/{filenames[0]}"
    fix = (f"fetch that file where the network allows and pass it: --{PRETRAINED_OPTION} "
           f"/path/to/{filenames[0]} (an HRNet-Image-Classification file such as "
           f"hrnetv2_{name.removeprefix('hrnet_')}_imagenet_pretrained.pth works too)")
    if _hub_offline():
        raise PretrainedBackboneError(
            f"timm's ImageNet weights for {name} ({wanted}) are not in the Hugging Face cache {cache_dir} "
            f"and HF_HUB_OFFLINE forbids downloading them; {fix}")
    reason = _hub_unreachable(hf_constants.ENDPOINT)
    if reason:
        raise PretrainedBackboneError(
            f"timm's ImageNet weights for {name} ({wanted}) are not in the Hugging Face cache {cache_dir} "
            f"and the hub is unreachable: {reason}; {fix}")
    if not download:
        return None, repo_id
    errors = []
    for filename in filenames:
        try:
            log.info("downloading timm's ImageNet weights %s/%s into %s", repo_id, filename, cache_dir)
            path = huggingface_hub.hf_hub_download(repo_id, filename, revision=revision or None,
                                                   cache_dir=cache_dir, library_name="timm")
            return Path(path), repo_id
        except LocalEntryNotFoundError as err:  # (an EntryNotFoundError) the network failed: stop
            errors.append(f"{filename}: {err}")
            break
        except EntryNotFoundError as err:  # not in the repository; timm's order: safetensors, then .bin
            errors.append(f"{filename}: {type(err).__name__}")
        except Exception as err:  # the hub raises many types (HTTP, OSError, its own errors)
            errors.append(f"{filename}: {type(err).__name__}: {err}")
            break
    raise PretrainedBackboneError(
        f"could not download timm's ImageNet weights for {name} ({wanted}): {'; '.join(errors)}; {fix}")


def read_state_dict(path: Path | str) -> dict[str, Tensor]:
    """The tensors of an ImageNet HRNet file, unwrapped.

    Reads ``.safetensors`` or ``torch.save`` files (tensors only: ``weights_only=True``), takes
    the ``state_dict`` / ``model`` entry of a training checkpoint, and drops the ``module.``
    prefix that DataParallel / DDP put on every key.

    Raises:
        PretrainedBackboneError: the file cannot be read, or holds no state dict.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state: object = load_safetensors(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle, safetensors and OS errors all mean "unreadable"
        raise PretrainedBackboneError(
            f"cannot read ImageNet backbone file {path} ({type(err).__name__}: {err}); "
            f"{PRETRAINED_OPTION} needs a torch.save or .safetensors file of an ImageNet HRNet state dict") from err
    while isinstance(state, Mapping):
        wrapper = next((k for k in STATE_DICT_WRAPPERS if isinstance(state.get(k), Mapping)), None)
        if wrapper is None:
            break
        state = state[wrapper]
    if not isinstance(state, Mapping) or not state:
        raise PretrainedBackboneError(f"ImageNet backbone file {path} holds no state dict "
                                      f"(got {type(state).__name__})")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _listed(keys: list[str]) -> str:
    more = f" ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def match_backbone_state(
    state: Mapping[str, Tensor], own: Mapping[str, Tensor], source: str, name: str
) -> tuple[dict[str, Tensor], int]:
    """Check an ImageNet state dict against the body's, strictly; return what to load.

    Args:
        state: the file's tensors (after :func:`read_state_dict`).
        own: the body's state dict (real or meta tensors: only keys and shapes are read).
        source: the file, for messages.
        name: the HRNet variant, for messages.

    Returns:
        (state dict with exactly ``own``'s keys, number of ``num_batches_tracked`` buffers the
        file lacked, filled with the body's own value).

    Raises:
        PretrainedBackboneError: listing every backbone key the file lacks, every key it has
            beyond the backbone and the classification head, and every shape mismatch.
    """
    def is_head(key: str) -> bool:
        return key.split(".", 1)[0] in CLASSIFIER_MODULES

    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not is_head(k)]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs {name} {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} backbone tensor(s) missing: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (neither {name}'s backbone nor its "
                        f"classification head {', '.join(CLASSIFIER_MODULES)}): {_listed(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es), a file of another HRNet width?: {_listed(shapes)}")
    if problems:
        raise PretrainedBackboneError(
            f"ImageNet backbone file {source} does not fit {name}: " + "; ".join(problems)
            + f". {PRETRAINED_OPTION} needs an ImageNet {name} file in timm's or HRNet-Image-Classification's layout")
    filled = [k for k in own if k not in state]
    out = {k: state[k] for k in own if k in state}
    for k in filled:  # num_batches_tracked only (checked above)
        out[k] = torch.zeros_like(own[k], device="cpu") if own[k].is_meta else own[k]
    return out, len(filled)
