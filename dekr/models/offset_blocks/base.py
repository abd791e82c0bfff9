"""The offset block interface, and how ``model.net.offset_block`` names a block class.

No registry: a shipped name ``<name>`` is the class ``<Name>Block`` of the module
``dekr.models.offset_blocks.<name>`` (``adaptive`` -> ``adaptive.AdaptiveBlock``, ``my_conv`` ->
``my_conv.MyConvBlock``); any other block is given by its class path, as LightningCLI and
jsonargparse name every other class. A block's own options come in jsonargparse's mapping form,
``{class_path: <full class path>, init_args: {...}}`` (jsonargparse imports the class path of any
such mapping, so the mapping form takes no short name).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from dekr.dataclass_config import ConfigError
from dekr.models.adaptive_conv import AdaptiveBackend

#: The option blocks are chosen by, for messages.
OPTION = "model.net.offset_block"

#: The package whose modules are the shipped blocks.
PACKAGE = __name__.rpartition(".")[0]

#: A value of ``model.net.offset_block``: a shipped name (``adaptive``), a class path
#: (``mypkg.blocks.MyBlock``) or ``{"class_path": ..., "init_args": {...}}``.
OffsetBlockOption = str | dict[str, Any]

#: The constructor arguments the offset head passes to every block; ``init_args`` cannot set them.
HEAD_ARGUMENTS = ("channels_per_group", "groups", "dilation", "backend")


class OffsetBlock(nn.Module):
    """A residual block of the offset head: ``groups`` independent branches of
    ``channels_per_group`` channels side by side, (N, groups*channels_per_group, H, W) -> the same
    shape. Every branch must stay apart (grouped convolutions): with ``groups=K`` each one is a
    keypoint's (the disentangled head); the shared head passes ``groups=1``.

    The offset head builds each block as ``cls(channels_per_group, groups, dilation=...,
    backend=..., **init_args)``:

    * ``dilation``: of the 3x3 kernels (``model.net.dilation``);
    * ``backend``: how blocks that sample off the grid do it (``model.net.adaptive_backend``);
      blocks that do not may ignore it;
    * ``init_args``: the block's own options, from ``{class_path: ..., init_args: {...}}``.

    A subclass that adds options only can leave the four to this constructor:
    ``def __init__(self, *args, width=2, **kwargs): super().__init__(*args, **kwargs)``, then read
    ``self.channels`` (all branches' channels), ``self.groups``, ``self.dilation``.

    :meth:`init_official_` is the block's part of the official initialisation:
    :func:`dekr.models.dekr.init_official_` calls it after drawing every ``nn.Conv2d`` from N(0, 0.001)
    and setting every BN to 1/0, so what it sets (zero offset predictors) is what a fresh network has.
    """

    def __init__(self, channels_per_group: int, groups: int = 1, dilation: int = 1,
                 backend: AdaptiveBackend = "grid_sample") -> None:
        super().__init__()
        self.channels_per_group = channels_per_group
        self.groups = groups
        self.dilation = dilation
        self.backend = backend

    @property
    def channels(self) -> int:
        """Channels of the input and output, all branches together."""
        return self.channels_per_group * self.groups

    def init_official_(self) -> None:
        """Nothing beyond the generic official init (convs N(0, 0.001), BN 1/0); override to set more."""

    def extra_repr(self) -> str:
        return f"channels_per_group={self.channels_per_group}, groups={self.groups}, dilation={self.dilation}"


def shipped_block_names() -> list[str]:
    """The names ``model.net.offset_block`` takes without a class path: this package's block modules."""
    folder = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)])
                  if not m.name.startswith("_") and m.name != "base")


def block_class_name(name: str) -> str:
    """The class a shipped block's module defines: ``deformable`` -> ``DeformableBlock``."""
    return "".join(part.capitalize() for part in name.split("_")) + "Block"


def resolve_offset_block(value: OffsetBlockOption) -> tuple[type[OffsetBlock], dict[str, Any]]:
    """The block class and its ``init_args`` named by a ``model.net.offset_block`` value.

    Raises:
        ConfigError: naming the option and the value, for a name that is not shipped, a class path
            whose module or class is not there, a class that is not an :class:`OffsetBlock`, or a
            malformed mapping. A module that is there but fails to import keeps its own exception
            (and traceback): that is a bug in the module, not in the config.
    """
    if isinstance(value, Mapping):
        extra = set(value) - {"class_path", "init_args"}
        init_args = value.get("init_args") or {}
        if "class_path" not in value or extra or not isinstance(init_args, Mapping):
            raise ConfigError(f"{OPTION}: a mapping takes class_path and optionally init_args (a mapping), "
                              f"got {value!r}")
        class_path = value["class_path"]
        if isinstance(class_path, str) and "." not in class_path:
            # jsonargparse reads every {class_path, init_args} mapping as a class spec, whose class_path
            # it imports: a shipped name would pass here but not through the command line or YAML.
            hint = (f" ({PACKAGE}.{class_path}.{block_class_name(class_path)})"
                    if class_path in shipped_block_names() else "")
            raise ConfigError(f"{OPTION}: in the mapping form, class_path is a full class path{hint}, "
                              f"got {class_path!r}")
    else:
        class_path, init_args = value, {}
    if not isinstance(class_path, str) or not class_path.strip():
        raise ConfigError(f"{OPTION} must be a block name or class path (a string), got {class_path!r}")
    if "." in class_path:
        module_name, _, class_name = class_path.rpartition(".")
    else:
        names = shipped_block_names()
        if class_path not in names:
            raise ConfigError(f"{OPTION}={class_path!r}: no such offset block; shipped: {', '.join(names)}, "
                              "or give your own block's class path (package.module.ClassName)")
        module_name, class_name = f"{PACKAGE}.{class_path}", block_class_name(class_path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not (module_name == err.name or module_name.startswith(f"{err.name}.")):
            raise  # the module is there but imports something that is not: its author's bug
        raise ConfigError(f"{OPTION}={class_path!r}: no module {module_name!r} to import (is the class path "
                          "package.module.ClassName, and the package on the Python path?)") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"{OPTION}={class_path!r}: module {module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, OffsetBlock)):
        raise ConfigError(f"{OPTION}={class_path!r}: {cls!r} is not a subclass of "
                          f"{PACKAGE}.OffsetBlock")
    reserved = sorted(set(init_args) & set(HEAD_ARGUMENTS))
    if reserved:
        raise ConfigError(f"{OPTION}: init_args {reserved} are set by the network (model.net."
                          "offset_channels_per_keypoint, disentangled, dilation, adaptive_backend)")
    try:
        inspect.signature(cls).bind(1, 1, dilation=1, backend="grid_sample", **init_args)
    except TypeError as err:
        raise ConfigError(f"{OPTION}={class_path!r}: {cls.__name__} refuses init_args {dict(init_args)!r} "
                          f"({err})") from None
    return cls, dict(init_args)
