"""A keypoint spec from a COCO-format annotation file: what ``scripts/make_spec.py`` runs.

:func:`spec_from_coco` reads the chosen categories' keypoint names and skeleton and derives the rest:

* ``skeleton``: the categories' skeleton, 0-based. COCO files number keypoints from 1, several
  public animal datasets from 0: a skeleton that uses keypoint 0 is 0-based, one that uses keypoint K
  is 1-based, and one that uses neither needs ``skeleton_base`` (:func:`skeleton_numbering`);
* ``flip_pairs``: (left, right) pairs of keypoints whose names differ only by a side word
  (:func:`propose_flip_pairs`); keypoints without a partner are reported;
* ``sigmas``: the OKS sigmas given, else :data:`DEFAULT_SIGMA` for every keypoint, with a warning;
* ``rescore_limbs``: the skeleton's limbs as (low, high) index pairs in ascending order (this
  reproduces COCO's official rescoring limbs from the COCO skeleton);
* ``rescore_torso_limbs``: the rescore limbs joining an upper-torso keypoint (a name with the word
  ``shoulder`` or ``neck``) to a lower-torso one (``hip``, ``pelvis`` or ``tail``): COCO's two
  shoulder-hip limbs, AP-10K's neck-root_of_tail. When none does, the list is empty and the
  rescoring features are normalised by the mean length of every limb (:mod:`dekr.inference.rescore`);
* ``category_ids``: the chosen categories (all keypoint categories by default). They must share
  keypoint names and skeleton: one spec describes one skeleton.

:meth:`DerivedSpec.to_yaml` writes the spec in the style of the shipped specs, with comments that
say where each field came from.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dekr.data.dataset import load_coco_json
from dekr.data.spec import KeypointSpec

log = logging.getLogger(__name__)

#: OKS sigma used for every keypoint when none are given: inside COCO's range (0.025 for the eyes
#: to 0.107 for the hips), but a guess; OKS-AP figures depend on it.
DEFAULT_SIGMA = 0.05
#: Larger sigmas are taken for the x10 form of published tables (e.g. COCO's 0.79 for shoulders).
MAX_PLAUSIBLE_SIGMA = 0.3

LEFT_WORDS, RIGHT_WORDS = ("left", "l"), ("right", "r")
UPPER_TORSO_WORDS, LOWER_TORSO_WORDS = ("shoulder", "neck"), ("hip", "pelvis", "tail")

_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_WIDTH = 100  # line width of the YAML writer


@dataclass(frozen=True)
class DerivedSpec:
    """A spec derived from an annotation file, with what the YAML comments report.

    Attributes:
        spec: the keypoint spec.
        source: the annotation file's name (no folder: the YAML stays the same wherever it is made).
        category_names: the names of ``spec.category_ids``, in that order.
        sigmas_given: False when every sigma is :data:`DEFAULT_SIGMA`.
        centre_keypoints: keypoints whose names carry no side word (a flip maps them to themselves).
        unpaired_keypoints: keypoints with a side word but no partner (a flip leaves them as they are:
            check their names).
        skeleton_base: how the file's skeleton numbers keypoints: from 1 (COCO) or from 0.
    """

    spec: KeypointSpec
    source: str
    category_names: tuple[str, ...]
    sigmas_given: bool
    centre_keypoints: tuple[str, ...]
    unpaired_keypoints: tuple[str, ...]
    skeleton_base: int = 1

    def to_yaml(self) -> str:
        """The spec as YAML in the shipped specs' style; loads back to ``self.spec``."""
        spec, names = self.spec, self.spec.keypoint_names
        categories = [f"{i} {_comment_text(n)}," for i, n in zip(spec.category_ids, self.category_names)]
        categories[-1] = categories[-1].rstrip(",")
        lines = [f"# {spec.name}: {spec.num_keypoints} keypoints, made by scripts/make_spec.py from {self.source}.",
                 *_comment_block([*f"Categories ({len(spec.category_ids)}; evaluated pooled, predictions written "
                                  f"with id {spec.category_ids[0]}):".split(), *categories]),
                 f"name: {_scalar(spec.name)}",
                 *_flow("keypoint_names", [_scalar(n) for n in names])]
        pairs = ", ".join(f"{names[a]}-{names[b]}" for a, b in spec.flip_pairs) or "none"
        note = f"Flip pairs from left/right names: {pairs}."
        if self.centre_keypoints:
            note += f" No side (mapped to themselves): {', '.join(self.centre_keypoints)}."
        if self.unpaired_keypoints:
            note += f" CHECK, a side but no partner: {', '.join(self.unpaired_keypoints)}."
        lines += [*_comment_block(_comment_text(note)), *_flow("flip_pairs", [_pair(p) for p in spec.flip_pairs])]
        if self.sigmas_given:
            lines.append("# OKS sigmas as given (already divided by 10, as pycocotools uses them).")
        else:
            lines += _comment_block(f"WARNING: no sigmas were given; every keypoint has the default OKS sigma "
                                    f"{DEFAULT_SIGMA}. OKS-AP depends on them: replace them with your "
                                    f"dataset's per-keypoint sigmas.")
        lines += [*_flow("sigmas", [repr(float(s)) for s in spec.sigmas]),
                  f"# The categories' skeleton, 0-based (the annotation file numbers keypoints from "
                  f"{self.skeleton_base}).",
                  *_flow("skeleton", [_pair(p) for p in spec.skeleton])]
        torso = ", ".join(f"{i} ({names[spec.rescore_limbs[i][0]]}-{names[spec.rescore_limbs[i][1]]})"
                          for i in spec.rescore_torso_limbs)
        lines += [*_comment_block("Rescoring limbs: the skeleton's limbs as (low, high) pairs, sorted. Torso "
                                  "normaliser: the limbs joining a shoulder/neck keypoint to a hip/pelvis/tail "
                                  f"one: {torso or 'none, so the mean length of every limb'}."),
                  *_flow("rescore_limbs", [_pair(p) for p in spec.rescore_limbs]),
                  *_flow("rescore_torso_limbs", [str(i) for i in spec.rescore_torso_limbs]),
                  f"crowd_eval: {'true' if spec.crowd_eval else 'false'}",
                  *_flow("category_ids", [str(i) for i in spec.category_ids])]
        text = "\n".join(lines) + "\n"
        if KeypointSpec.from_dict(yaml.safe_load(text), source="written spec") != spec:
            raise RuntimeError(f"the YAML written for spec {spec.name!r} does not load back to it")
        return text


def spec_from_coco(annotations: str | Path | dict[str, Any], categories: Sequence[int | str] | None = None,
                   sigmas: Sequence[float] | None = None, name: str | None = None,
                   skeleton_base: int | None = None) -> DerivedSpec:
    """Derive a keypoint spec from a COCO-format annotation file (the rules: module docstring).

    Args:
        annotations: path of the json, or its parsed content.
        categories: category ids or names to cover (``None``: every category with keypoints).
        sigmas: K OKS sigmas, already divided by 10 (COCO's nose: 0.026); ``None``: the default.
        name: the spec's name (default: the file's stem, ``custom`` for a dict).
        skeleton_base: 0 or 1, how the file's skeleton numbers keypoints; ``None``: recognised from
            the skeleton (refused when it could be either).

    Raises:
        ValueError: naming the file and category at fault: a missing or unreadable file
            (:class:`dekr.data.dataset.DataError`), an unknown category, categories with different
            keypoints or skeletons, a bad skeleton entry, a wrong number of sigmas.
    """
    if isinstance(annotations, dict):
        data, source, stem = annotations, "<in-memory annotations>", "custom"
    else:
        path = Path(annotations)
        data, source, stem = load_coco_json(path), path.name, path.stem
    chosen = _choose_categories(data, categories, source)
    first = chosen[0]
    keypoint_names = tuple(str(n) for n in first["keypoints"])
    numbering = skeleton_numbering(first.get("skeleton") or [], len(keypoint_names), first, source,
                                   skeleton_base)
    skeleton = _zero_based_skeleton(first.get("skeleton") or [], len(keypoint_names), first, source, numbering)
    for other in chosen[1:]:
        if tuple(str(n) for n in other["keypoints"]) != keypoint_names:
            raise ValueError(f"{source}: categories {_label(first)} and {_label(other)} have different keypoint "
                             f"names ({list(keypoint_names)} vs {list(other['keypoints'])}); one spec covers one "
                             f"skeleton: choose categories that share it (--categories)")
        theirs = _zero_based_skeleton(other.get("skeleton") or [], len(keypoint_names), other, source, numbering)
        if {frozenset(p) for p in theirs} != {frozenset(p) for p in skeleton}:
            raise ValueError(f"{source}: categories {_label(first)} and {_label(other)} have different skeletons; "
                             f"one spec covers one skeleton: choose categories that share it (--categories)")
    flip_pairs, centre, unpaired = propose_flip_pairs(keypoint_names)
    if unpaired:
        log.warning("%s: keypoints with a side in their name but no partner (a flip leaves them as they are): %s",
                    source, ", ".join(unpaired))
    sigmas_given = sigmas is not None
    sigma_values = _checked_sigmas(sigmas, keypoint_names, source) if sigmas_given else \
        (DEFAULT_SIGMA,) * len(keypoint_names)
    if not sigmas_given:
        log.warning("%s: no OKS sigmas given: every keypoint gets the default %s; OKS-AP depends on them, so "
                    "pass your dataset's sigmas", source, DEFAULT_SIGMA)
    rescore_limbs = tuple(sorted({(min(a, b), max(a, b)) for a, b in skeleton}))
    if not rescore_limbs:
        log.warning("%s: category %s has no skeleton: no rescoring limbs (rescoring is unavailable)",
                    source, _label(first))
    spec = KeypointSpec(name=name or stem, keypoint_names=keypoint_names, flip_pairs=flip_pairs,
                        sigmas=sigma_values, skeleton=skeleton, rescore_limbs=rescore_limbs,
                        rescore_torso_limbs=torso_limbs(keypoint_names, rescore_limbs),
                        category_ids=tuple(int(c["id"]) for c in chosen))
    return DerivedSpec(spec, source, tuple(str(c.get("name", c["id"])) for c in chosen), sigmas_given,
                       centre, unpaired, numbering)


def propose_flip_pairs(keypoint_names: Sequence[str]) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...],
                                                                tuple[str, ...]]:
    """(left, right) index pairs of names that differ only by their side word, sorted by left index.

    A side word is one word of the name (words split at ``_``, ``-``, spaces, dots, digits and
    camelCase): ``left``/``l`` or ``right``/``r`` (any case), or ``left``/``right`` glued to the start
    or end of a word. ``left_eye``/``right_eye``, ``eye_l``/``eye_r``, ``LeftEye``/``RightEye``,
    ``L_Eye``/``R_Eye`` and ``front_left_paw``/``front_right_paw`` pair up.

    Returns:
        the pairs, the names without a side word (centre line), and the names with a side word but
        no (unique) partner.
    """
    sided: dict[tuple[str, ...], dict[str, list[int]]] = {}
    centre = []
    for index, name in enumerate(keypoint_names):
        found = _side_and_key(name)
        if found is None:
            centre.append(name)
            continue
        side, key = found
        sided.setdefault(key, {"left": [], "right": []})[side].append(index)
    pairs, unpaired = [], []
    for sides in sided.values():
        if len(sides["left"]) == 1 and len(sides["right"]) == 1:
            pairs.append((sides["left"][0], sides["right"][0]))
        else:  # no partner, or several candidates: no guess
            unpaired += sides["left"] + sides["right"]
    return (tuple(sorted(pairs)), tuple(centre),
            tuple(keypoint_names[i] for i in sorted(unpaired)))


def torso_limbs(keypoint_names: Sequence[str], limbs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """Indices of the ``limbs`` joining an upper-torso keypoint to a lower-torso one (module docstring)."""
    def has(index: int, words: Sequence[str]) -> bool:
        return any(w in words for w in _words(keypoint_names[index]))

    return tuple(i for i, (a, b) in enumerate(limbs)
                 if (has(a, UPPER_TORSO_WORDS) and has(b, LOWER_TORSO_WORDS))
                 or (has(b, UPPER_TORSO_WORDS) and has(a, LOWER_TORSO_WORDS)))


# ------------------------------------------------------------------------------------------ helpers
def _words(name: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(name)]


def _side_and_key(name: str) -> tuple[str, tuple[str, ...]] | None:
    """(side, the name's words with the side word replaced by a marker), or None without one side word."""
    words = _words(name)
    found = []
    for i, word in enumerate(words):
        for side, side_words in (("left", LEFT_WORDS), ("right", RIGHT_WORDS)):
            glued = side_words[0]
            if word in side_words and (len(word) > 1 or len(words) > 1):
                found.append((side, (*words[:i], "<side>", *words[i + 1:])))
            elif word != glued and word.startswith(glued):
                found.append((side, (*words[:i], "<side>", word[len(glued):], *words[i + 1:])))
            elif word != glued and word.endswith(glued):
                found.append((side, (*words[:i], word[:-len(glued)], "<side>", *words[i + 1:])))
    return found[0] if len(found) == 1 else None


def _choose_categories(data: dict[str, Any], wanted: Sequence[int | str] | None, source: str) -> list[dict[str, Any]]:
    categories = [c for c in data.get("categories") or [] if isinstance(c, dict) and "id" in c]
    if not categories:
        raise ValueError(f"{source}: no 'categories' list: a COCO keypoint file names its keypoints there")
    with_keypoints = [c for c in categories if c.get("keypoints")]
    if wanted is None:
        if not with_keypoints:
            raise ValueError(f"{source}: no category has a 'keypoints' list")
        return with_keypoints
    by_id = {int(c["id"]): c for c in categories}
    by_name = {str(c.get("name")).lower(): c for c in categories}
    chosen = []
    for item in wanted:
        text = str(item).strip()
        category = by_id.get(int(text)) if text.lstrip("-").isdigit() else by_name.get(text.lower())
        if category is None:
            available = ", ".join(_label(c) for c in categories)
            raise ValueError(f"{source}: no category {text!r} (by id or name); available: {available}")
        if not category.get("keypoints"):
            raise ValueError(f"{source}: category {_label(category)} has no 'keypoints' list")
        if category not in chosen:
            chosen.append(category)
    if not chosen:
        raise ValueError(f"{source}: no category chosen")
    return chosen


def skeleton_numbering(skeleton: Sequence[Any], k: int, category: dict[str, Any], source: str,
                       base: int | None = None) -> int:
    """Whether a category's skeleton numbers its ``k`` keypoints from 0 or from 1: COCO numbers from
    1, several public animal datasets from 0. A 0 says 0-based and a ``k`` says 1-based; a skeleton
    with neither (both readings valid) is ambiguous and needs ``base``. ``base`` given: checked."""
    indices = [i for limb in skeleton if isinstance(limb, (list, tuple)) for i in limb if isinstance(i, int)]
    found = 0 if 0 in indices else 1 if k in indices else None
    if base is not None:
        if found is not None and found != base:
            raise ValueError(f"{source}: category {_label(category)}: the skeleton numbers keypoints from {found} "
                             f"(it uses {0 if found == 0 else k}), not from {base} as --skeleton-base says")
        return base
    if found is None and indices:
        raise ValueError(f"{source}: category {_label(category)}: the skeleton uses neither keypoint 0 nor {k}, so it "
                         f"may number keypoints from 0 or from 1 (COCO: 1); say which with --skeleton-base 0 or 1")
    return 1 if found is None else found


def _zero_based_skeleton(skeleton: Sequence[Any], k: int, category: dict[str, Any], source: str,
                         base: int) -> tuple[tuple[int, int], ...]:
    limbs: list[tuple[int, int]] = []
    for limb in skeleton:
        if not (isinstance(limb, (list, tuple)) and len(limb) == 2 and all(isinstance(i, int) for i in limb)
                and all(base <= i < k + base for i in limb) and limb[0] != limb[1]):
            raise ValueError(f"{source}: category {_label(category)}: skeleton entry {limb!r} is not two distinct "
                             f"{base}-based keypoint numbers in {base}..{k - 1 + base} (this skeleton numbers "
                             f"keypoints from {base})")
        pair = (limb[0] - base, limb[1] - base)
        if pair not in limbs:
            limbs.append(pair)
    return tuple(limbs)


def _checked_sigmas(sigmas: Sequence[float], names: Sequence[str], source: str) -> tuple[float, ...]:
    values = tuple(float(s) for s in sigmas)
    if len(values) != len(names):
        raise ValueError(f"{source}: {len(values)} sigmas given for {len(names)} keypoints ({', '.join(names)})")
    bad = [f"{n}={s}" for n, s in zip(names, values) if not 0 < s <= MAX_PLAUSIBLE_SIGMA]
    if bad:
        raise ValueError(f"sigmas must lie in (0, {MAX_PLAUSIBLE_SIGMA}] (pycocotools' scale, e.g. COCO's nose "
                         f"0.026; published tables often list them x10: divide those by 10); got {', '.join(bad)}")
    return values


def _label(category: dict[str, Any]) -> str:
    return f"{category['id']} ({category.get('name', '?')})"


def _scalar(text: str) -> str:
    """A YAML flow scalar: bare when it reads back as the same string, else JSON-quoted."""
    bare = not re.search(r"[\s,\[\]{}#:&*!|>'\"%@`]", text) and text != ""
    if bare:
        try:
            bare = yaml.safe_load(text) == text
        except yaml.YAMLError:
            bare = False
    return text if bare else json.dumps(text)


def _comment_text(text: str) -> str:
    return " ".join(str(text).split())


def _comment_block(text: str | Sequence[str]) -> list[str]:
    """``text`` (or a list of pieces never split) as ``# `` lines of at most the writer's width."""
    lines, line = [], "#"
    for word in (text.split() if isinstance(text, str) else text):
        if len(line) + 1 + len(word) > _WIDTH and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line]


def _pair(pair: tuple[int, int]) -> str:
    return f"[{pair[0]}, {pair[1]}]"


def _flow(key: str, items: Sequence[str]) -> list[str]:
    """``key: [a, b, ...]`` wrapped at the writer's width, continuation lines aligned after the bracket."""
    head = f"{key}: ["
    if not items:
        return [head + "]"]
    lines, line = [], head
    for n, item in enumerate(items):
        piece = item + ("]" if n == len(items) - 1 else ",")
        if len(line) + 1 + len(piece) > _WIDTH and line != head:
            lines.append(line)
            line = " " * len(head) + piece
        else:
            line += ("" if line == head else " ") + piece
    return [*lines, line]
