"""Checkpoints: one loader for every DEKR checkpoint kind, and safe writing.

:func:`load_checkpoint` takes a path or a model-zoo name and recognises the format from the
file's content, whatever its name:

* ours: a Lightning ``.ckpt`` (``hyper_parameters`` + ``state_dict``), written by training or by
  :func:`save_module_checkpoint`; it records its architecture, spec and decode options;
* the official HRNet/DEKR ``pose_dekr_hrnet*.pth`` (:mod:`dekr.convert.official`);
* MMPose 1.x DEKR (:mod:`dekr.convert.mmpose`), SuperGradients ``dekr_w32_no_dc``
  (:mod:`dekr.convert.supergradients`), with their rescoring nets;
* an exported ``.onnx`` (spec and decode options in its metadata).

Foreign layouts are converted strictly (every key used, every tensor filled) and their variant
(any HRNet width, K, head sizes) is read off the tensor shapes. The result is a plain
:class:`~dekr.models.dekr.DEKRNet` in eval mode with its keypoint spec, decode defaults and
rescoring net: no LightningModule is built for inference. Fine-tuning (``model.init_from``) reads
its source through :func:`read_weights`, the same path.

Writing: :func:`atomic_torch_save` never leaves a truncated file at the target path.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from dekr.convert import CheckpointMismatchError
from dekr.convert.base import ConvertedCheckpoint
from dekr.data.spec import KeypointSpec, load_spec
from dekr.file_publish import publish
from dekr.models.dekr import DEKRNet, DEKRNetConfig

log = logging.getLogger(__name__)

#: Key of our checkpoints holding the keypoint spec's contents (:meth:`KeypointSpec.to_dict`);
#: ``hyper_parameters["spec"]`` holds the name or path it was configured with.
SPEC_CONTENTS_KEY = "keypoint_spec"

#: Key of our checkpoints holding the data's input size of the run (``data.input_size``): the test
#: size of validation, and of loading the checkpoint anywhere, unless ``model.decode`` sets one.
TEST_INPUT_SIZE_KEY = "test_input_size"

#: Checkpoints without a spec (official, MMPose, SuperGradients): the spec by the number of keypoints.
SPEC_BY_NUM_KEYPOINTS = {17: "coco", 14: "crowdpose"}


class ModelLoadError(ValueError):
    """A checkpoint cannot be loaded, or does not fit the requested keypoint spec."""


class IncompatibleCheckpointError(ValueError):
    """A checkpoint to resume from was trained with another architecture or keypoint set."""


#: Network fields that change the parameters' shapes: a run resumes only where they agree.
RESUME_NET_FIELDS = ("backbone", "num_keypoints", "heatmap_channels", "offset_channels_per_keypoint",
                     "offset_blocks", "offset_block", "disentangled")


def check_resume_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], spec: KeypointSpec) -> None:
    """Raise :class:`IncompatibleCheckpointError`, naming every differing field, when a checkpoint's
    ``hyper_parameters`` (``saved``) describe another architecture or keypoint set than the
    module's (``current``, whose spec is ``spec``). Specs agree when their keypoint names do."""
    problems = []
    saved_net, current_net = saved.get("net") or {}, current.get("net") or {}
    for key in RESUME_NET_FIELDS:
        if key in saved_net and saved_net[key] != current_net.get(key):
            problems.append(f"net.{key}: checkpoint {saved_net[key]!r} vs config {current_net.get(key)!r}")
    if "spec" in saved and str(saved["spec"]) != str(current.get("spec")):
        try:
            same = load_spec(saved["spec"]).keypoint_names == spec.keypoint_names
        except (FileNotFoundError, ValueError):
            same = False
        if not same:
            problems.append(f"spec: checkpoint {saved['spec']!r} vs config {current.get('spec')!r}")
    if problems:
        raise IncompatibleCheckpointError(
            "the checkpoint does not fit the configured model:\n  " + "\n  ".join(problems)
            + "\n(to start a new run from its weights, use model.init_from=CHECKPOINT instead of --ckpt_path)")


@dataclass
class LoadedModel:
    """A network ready for inference and what is needed to use it as its authors did.

    Attributes:
        net: the DEKR network, eval mode, on CPU (or an ``OnnxPoseNet`` for ``.onnx`` files,
            callable with the same signature).
        spec: its keypoint spec.
        decode: the :class:`dekr.inference.DecodeConfig` fields the model sets explicitly (never
            defaults): recorded with it, needed by its format (e.g. SuperGradients' BGR letterboxed
            input), or the input size of its run config; merged by
            :func:`dekr.inference.config.resolve_decode` as :attr:`decode_layer`.
        format: ``ours``, ``official``, ``mmpose``, ``supergradients`` or ``onnx``.
        rescore: the rescoring net the checkpoint carries (MMPose, SuperGradients), else None.
        source: the path or zoo name it was loaded from.
    """

    net: Any
    spec: KeypointSpec
    decode: dict[str, Any] = field(default_factory=dict)
    format: str = "ours"
    rescore: Any = None
    source: str = ""

    @property
    def decode_layer(self) -> tuple[str, dict[str, Any]]:
        """``decode`` as a layer of :func:`dekr.inference.config.resolve_decode`, named for errors."""
        return f"the decode options of {self.source or 'the checkpoint'} ({self.format})", self.decode


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # torch's writer reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] ...
        # unexpected pos": say what happened, naming the file (other errors, e.g. pickling, pass as they are)
        if isinstance(err, OSError) or (isinstance(err, RuntimeError) and "inline_container" in str(err)):
            free = shutil.disk_usage(path.parent).free
            if isinstance(err, OSError):
                cause = err.strerror or str(err)
            else:  # torch's writer loses the errno; a short write is a full disk (or quota) in practice
                cause = f"the write stopped short, most likely a full disk (torch: {str(err).strip()[:120]})"
            raise CheckpointWriteError(f"cannot write checkpoint {path}: {cause}; {free / 2**20:.1f} MiB free on its "
                                       f"file system without it; the previous {path.name}, if any, is "
                                       "intact") from err
        raise
    return path


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a read-only folder); the previous file is intact."""


def save_module_checkpoint(module: L.LightningModule, path: str | Path) -> Path:
    """A Lightning checkpoint of ``module``'s weights and hyper-parameters (no trainer state),
    loadable with ``type(module).load_from_checkpoint(path)``."""
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    module.on_save_checkpoint(checkpoint)  # what the module adds to every checkpoint (its spec's contents)
    return atomic_torch_save(checkpoint, path)


# ---------------------------------------------------------------------------------------------- loading
#: The kinds of file :func:`load_checkpoint` reads, for the messages about the others.
KNOWN_FORMATS = "ours .ckpt, official / MMPose / SuperGradients .pth, an exported .onnx or a model-zoo name"


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``): a zip holding ``constants.pkl``
    beside its code, the mark ``torch.load`` itself goes by."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_torch_file(path: str | Path) -> Any:
    """``torch.load`` (tensors only, on the CPU) with errors that name the file and what it is."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if is_torchscript_archive(path):  # torch.load would hand it to the deprecated torch.jit.load
        raise ModelLoadError(f"{path} is a TorchScript model (torch.jit), which dekr does not load: give the "
                             f"checkpoint it was made from, or an ONNX export of it (scripts/export.py); "
                             f"dekr loads {KNOWN_FORMATS}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle, not a torch file: all "unreadable"
        raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint (truncated, or not a "
                             f"checkpoint?); dekr loads {KNOWN_FORMATS}. {type(err).__name__}: "
                             f"{str(err)[:300]}") from err


def _is_ours(raw: Any) -> bool:
    return isinstance(raw, Mapping) and "hyper_parameters" in raw and isinstance(raw.get("state_dict"), Mapping)


#: A recorded spec: its name or path, or its contents (our checkpoints since they carry them).
RecordedSpec = str | dict[str, Any] | None


def _convert_ours(raw: Mapping[str, Any]) -> tuple[ConvertedCheckpoint, RecordedSpec]:
    hparams = dict(raw["hyper_parameters"])
    net = dict(hparams.get("net") or {})
    net["pretrained_backbone"] = False  # the checkpoint holds the backbone
    config = DEKRNetConfig.from_dict(net)
    net_state = {k.removeprefix("net."): v for k, v in raw["state_dict"].items() if k.startswith("net.")}
    decode = dict(hparams.get("decode") or {})
    if "input_size" not in decode and raw.get(TEST_INPUT_SIZE_KEY):
        decode["input_size"] = int(raw[TEST_INPUT_SIZE_KEY])  # as in validation: the data's input size
    # A converted zoo checkpoint keeps the rescoring net of its source next to the network.
    rescore = raw.get("rescore_state")
    # The carried contents first: the spec file named in the hyper-parameters may be elsewhere now.
    recorded = raw.get(SPEC_CONTENTS_KEY) or hparams.get("spec")
    return ConvertedCheckpoint("ours", config, net_state, dict(rescore) if rescore else None, decode), recorded


def _foreign_converters() -> list[Callable[[Any], ConvertedCheckpoint | None]]:
    from dekr.convert import convert_mmpose, convert_official, convert_supergradients

    return [convert_official, convert_mmpose, convert_supergradients]


def convert_checkpoint(raw: Any, where: str = "<checkpoint>") -> tuple[ConvertedCheckpoint, RecordedSpec]:
    """Recognise ``raw`` (what ``torch.load`` returned) and convert it to our layout.

    Returns the converted checkpoint and the spec it records (ours only; None otherwise).

    Raises:
        ModelLoadError: no known format, or a known format whose tensors do not fit (listing them).
    """
    if _is_ours(raw):
        return _convert_ours(raw)
    for convert in _foreign_converters():
        try:
            converted = convert(raw)
        except CheckpointMismatchError as err:
            raise ModelLoadError(f"{where}: {err}") from err
        if converted is not None:
            return converted, None
    keys = list(raw)[:5] if isinstance(raw, Mapping) else type(raw).__name__
    raise ModelLoadError(f"{where}: not a DEKR checkpoint of a known format ({KNOWN_FORMATS}); "
                         f"it starts with {keys}")


def _resolve_spec(recorded: RecordedSpec, num_keypoints: int, wanted: str | KeypointSpec | None,
                  where: str) -> KeypointSpec:
    """The checkpoint's spec (recorded, or by K) checked against the one the caller wants."""
    name = recorded or SPEC_BY_NUM_KEYPOINTS.get(num_keypoints)
    if name is None and wanted is None:
        raise ModelLoadError(f"{where}: {num_keypoints} keypoints and no recorded keypoint spec; pass spec= "
                             "(a spec name or YAML path) to say which keypoints they are")
    own = load_spec(name) if name is not None else None
    if wanted is None:
        return own  # type: ignore[return-value]
    want = wanted if isinstance(wanted, KeypointSpec) else load_spec(wanted)
    if want.num_keypoints != num_keypoints or (own is not None and own.keypoint_names != want.keypoint_names
                                               and recorded is not None):
        have = f"spec {own.name!r}: {', '.join(own.keypoint_names[:4])}, ..." if own else "no recorded spec"
        raise ModelLoadError(
            f"{where} predicts {num_keypoints} keypoints ({have}) but the chosen spec {want.name!r} has "
            f"{want.num_keypoints} ({', '.join(want.keypoint_names[:4])}, ...); drop the spec to use the "
            f"checkpoint's own, or pick a checkpoint trained for {want.name!r}")
    return want


def build_net(config: DEKRNetConfig, state: Mapping[str, Tensor], where: str) -> DEKRNet:
    """A DEKRNet of ``config`` holding ``state`` (strict: missing and unexpected keys are listed)."""
    net = DEKRNet(config)
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        lines = [f"{where}: the weights do not fit the recorded architecture ({config.backbone}, "
                 f"K={config.num_keypoints}):"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape conflicts", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:8]) + (", ..." if len(items) > 8 else ""))
        raise ModelLoadError("\n".join(lines))
    net.load_state_dict(state, strict=True)
    return net.eval()


def _rescore_net(state: Mapping[str, Tensor] | None, spec: KeypointSpec, where: str, own_spec: RecordedSpec) -> Any:
    """The rescoring net a checkpoint carries, checked to fit ``spec`` (it was trained for the
    checkpoint's own spec, ``own_spec``)."""
    if state is None:
        return None
    from dekr.inference.rescore import rescore_net_from_state, trained_skeleton

    trained_for = trained_skeleton(load_spec(own_spec)) if own_spec else None
    return rescore_net_from_state(dict(state), spec, f"carried by {where}", trained_for)


def _onnx_model(path: Path, spec: str | KeypointSpec | None) -> LoadedModel:
    from dekr.export import OnnxPoseNet

    net = OnnxPoseNet(path)
    own = net.spec
    chosen = _resolve_spec(None, own.num_keypoints, spec, str(path)) if spec is not None else own
    if chosen.keypoint_names != own.keypoint_names:
        raise ModelLoadError(f"{path} predicts {own.num_keypoints} keypoints (spec {own.name!r}) but the chosen "
                             f"spec {chosen.name!r} has {chosen.num_keypoints}")
    return LoadedModel(net, chosen, dict(net.decode), "onnx", None, str(path))


def load_checkpoint(source: str | Path, spec: str | KeypointSpec | None = None) -> LoadedModel:
    """Load any DEKR checkpoint for inference (see the module docstring).

    Args:
        source: a file (ours ``.ckpt``, official / MMPose / SuperGradients ``.pth``, ``.onnx``) or
            a model-zoo name (:mod:`dekr.zoo`: downloaded, verified and converted once, cached).
        spec: the keypoint spec the caller expects: a checkpoint for another keypoint set is an
            error saying so; needed for foreign checkpoints whose K is neither 17 nor 14.
    """
    name = str(source)
    path = checkpoint_path(source)
    if path.suffix == ".onnx":
        return _onnx_model(path, spec)
    converted, recorded_spec = convert_checkpoint(read_torch_file(path), str(path))
    if converted.format == "ours" and "input_size" not in converted.decode and (size := _run_input_size(path)):
        # checkpoints saved before they recorded TEST_INPUT_SIZE_KEY: their run folder's config
        converted.decode["input_size"] = size
    chosen = _resolve_spec(recorded_spec, converted.net_config.num_keypoints, spec, str(path))
    net = build_net(converted.net_config, converted.state_dict, str(path))
    own_spec = recorded_spec or SPEC_BY_NUM_KEYPOINTS.get(converted.net_config.num_keypoints)
    rescore = _rescore_net(converted.rescore_state, chosen, str(path), own_spec)
    log.info("loaded %s (%s checkpoint, %s, spec %s)", name, converted.format, converted.net_config.backbone,
             chosen.name)
    return LoadedModel(net, chosen, dict(converted.decode), converted.format, rescore, name)


def read_weights(source: str | Path) -> tuple[ConvertedCheckpoint, tuple[str, ...] | None]:
    """The weights of any DEKR checkpoint in our layout, for fine-tuning: the converted checkpoint
    and its keypoint names (None when it records no spec and K is neither 17 nor 14)."""
    path = checkpoint_path(source)
    converted, recorded = convert_checkpoint(read_torch_file(path), str(path))
    name = recorded or SPEC_BY_NUM_KEYPOINTS.get(converted.net_config.num_keypoints)
    return converted, (load_spec(name).keypoint_names if name else None)


def checkpoint_path(source: str | Path) -> Path:
    """The local file of a checkpoint given as a path or a model-zoo name (fetched and converted once).

    Raises:
        ModelLoadError: ``source`` is no file and reads as a zoo name that the zoo lacks (a typo):
            the message has the closest name and every known one, not just "does not exist".
    """
    from dekr import zoo

    path = Path(source)
    if path.exists():
        return path
    if str(source) in zoo.ZOO:
        return _zoo_checkpoint(str(source))
    if zoo.looks_like_name(str(source)):
        try:
            zoo.get_entry(str(source))
        except zoo.UnknownModelError as err:
            raise ModelLoadError(f"checkpoint {source} is neither a file nor a model-zoo name: {err}") from None
    return path  # read_torch_file names the missing file


def _zoo_checkpoint(name: str) -> Path:
    """A zoo entry as one of our checkpoints: downloaded and verified (:func:`dekr.zoo.fetch`),
    converted once under a file lock (so DDP ranks convert once), kept in the zoo's cache with the
    entry's rescoring net when it has one."""
    from dekr import zoo

    entry = zoo.get_entry(name)
    target = zoo.converted_path(name)
    with zoo.file_lock(target):
        if target.is_file():
            return target
        try:
            raw_path = zoo.fetch(name)
        except zoo.ZooError as err:
            raise ModelLoadError(str(err)) from err
        converted, _ = convert_checkpoint(read_torch_file(raw_path), str(raw_path))
        rescore = converted.rescore_state
        if rescore is None and "rescore" in entry.extras:
            rescore = _zoo_rescore_state(name)
        net = build_net(converted.net_config, converted.state_dict, str(raw_path))
        hparams = {"net": {**converted.net_config.to_dict(), "pretrained_backbone": False}, "spec": entry.spec,
                   "decode": converted.decode, "source": {"zoo": name, "format": converted.format}}
        payload: dict[str, Any] = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                                   "hyper_parameters": hparams, "pytorch-lightning_version": L.__version__,
                                   "rescore_state": rescore}
        atomic_torch_save(payload, target)
        log.info("converted %s (%s) to %s", name, converted.format, target)
    return target


def _zoo_rescore_state(name: str) -> dict[str, Tensor] | None:
    """The rescoring net of a zoo entry (an extra file), or None with a note when it cannot be had
    (the network still loads; rescoring is optional)."""
    from dekr import zoo

    try:
        raw = read_torch_file(zoo.fetch_extra(name, "rescore"))
    except (zoo.ZooError, ModelLoadError) as err:
        log.warning("%s: no rescoring net (%s)", name, str(err).splitlines()[0])
        return None
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else raw
    state = {str(k).removeprefix("module."): v for k, v in state.items()} if isinstance(state, Mapping) else {}
    from dekr.convert.supergradients import convert_supergradients_rescore

    # SuperGradients' net (its score rule, sigmoid, travels in the decode options: rescore_rule)
    if (sg := convert_supergradients_rescore(raw)) is not None:
        return sg
    if {"l1.weight", "l2.weight", "l3.weight"} <= set(state):
        return state
    log.warning("%s: the rescoring file has an unknown layout (%s ...); rescoring is off", name, list(state)[:3])
    return None


def _run_input_size(ckpt: Path) -> int | None:
    """``data.input_size`` of the run config (``config.yaml``, written by ``scripts/train.py`` in the
    run folder) next to a checkpoint in ``<run>/checkpoints/`` or in the same folder."""
    import yaml

    for folder in (ckpt.parent, ckpt.parent.parent):
        config = folder / "config.yaml"
        if not config.is_file():
            continue
        try:
            data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
        except (yaml.YAMLError, AttributeError):
            return None
        data = data.get("init_args", data) if isinstance(data, dict) else {}
        size = data.get("input_size") if isinstance(data, dict) else None
        return int(size) if isinstance(size, int) and size > 0 and size % 64 == 0 else None
    return None
