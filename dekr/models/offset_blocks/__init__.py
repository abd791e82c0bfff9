"""Offset blocks: the residual blocks of each keypoint branch of the offset head.

One module per block; ``model.net.offset_block`` names one:

* ``adaptive`` (:class:`~dekr.models.offset_blocks.adaptive.AdaptiveBlock`, official): adaptive
  convolution, an affine sampling grid predicted per pixel;
* ``basic`` (:class:`~dekr.models.offset_blocks.basic.BasicBlock`): plain 3x3 convs, the paper's ablation;
* ``deformable`` (:class:`~dekr.models.offset_blocks.deformable.DeformableBlock`): free-form
  deformable convolution (DCN; DCNv2 with ``modulated: true``);
* your own: the class path of an :class:`OffsetBlock` subclass (``mypkg.blocks.MyBlock``). No
  registration: the class is imported by its path (see :mod:`dekr.models.offset_blocks.base`).

A block's own options: ``{class_path: <full class path>, init_args: {...}}``, e.g.
``{class_path: dekr.models.offset_blocks.deformable.DeformableBlock, init_args: {modulated: true}}``.

A new block is one file: a subclass of :class:`OffsetBlock` (its docstring says what the head
passes), with its own ``init_official_`` if the official init should set more than the generic
N(0, 0.001) convs and 1/0 BN (zero offset predictors, say). Name it by class path; to ship it, put
``<name>.py`` defining ``<Name>Block`` here, and ``<name>`` names it.
"""
from dekr.models.offset_blocks.base import (
    OffsetBlock,
    OffsetBlockOption,
    resolve_offset_block,
    shipped_block_names,
)

__all__ = ["OffsetBlock", "OffsetBlockOption", "resolve_offset_block", "shipped_block_names"]
