#!/usr/bin/env python3
"""Make a keypoint spec YAML from a COCO-format annotation file.

    python scripts/make_spec.py annotations.json --out my_spec.yaml
    python scripts/make_spec.py ap10k-train.json --out ap10k.yaml --name ap10k \
        --sigmas .025,.025,.026,.035,.035,.079,.072,.062,.079,.072,.062,.107,.087,.089,.107,.087,.089
    python scripts/make_spec.py annotations.json --out dogs.yaml --categories dog,wolf

Reads the categories' keypoint names and skeleton, proposes flip pairs from left/right names (and
lists the keypoints without a partner), takes the OKS sigmas given (default: 0.05 for every
keypoint, with a warning) and derives the rescoring limbs (rules: :mod:`dekr.data.make_spec`).
Check the printed summary, then use the file as ``model.spec`` / ``data.spec``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.data.make_spec import DEFAULT_SIGMA, spec_from_coco  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402


def _list(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


def main(argv: list[str] | None = None) -> Path:
    silence_library_noise()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="COCO-format keypoint annotation json")
    parser.add_argument("--out", required=True, help="spec YAML to write")
    parser.add_argument("--categories", default="all",
                        help="category ids or names, comma-separated, or 'all' (default): every category with "
                             "keypoints; they must share keypoint names and skeleton")
    parser.add_argument("--sigmas", default="default",
                        help=f"K OKS sigmas in keypoint order, comma-separated, already divided by 10 (COCO's "
                             f"nose: 0.026), or 'default' ({DEFAULT_SIGMA} for every keypoint)")
    parser.add_argument("--name", help="spec name (default: the annotation file's stem)")
    parser.add_argument("--skeleton-base", type=int, choices=(0, 1),
                        help="how the file's skeleton numbers keypoints: 1 (COCO) or 0 (default: recognised "
                             "from the skeleton; needed only when it could be either)")
    args = parser.parse_args(argv)

    categories = None if args.categories.strip().lower() == "all" else _list(args.categories)
    try:
        sigmas = None if args.sigmas.strip().lower() == "default" else [float(s) for s in _list(args.sigmas)]
    except ValueError:
        parser.error(f"--sigmas: expected comma-separated numbers or 'default', got {args.sigmas!r}")
    try:
        derived = spec_from_coco(args.annotations, categories=categories, sigmas=sigmas, name=args.name,
                                 skeleton_base=args.skeleton_base)
    except (OSError, ValueError) as err:
        parser.exit(2, f"make_spec: error: {err}\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(derived.to_yaml())

    spec, names = derived.spec, derived.spec.keypoint_names
    print(f"spec {spec.name!r}: {spec.num_keypoints} keypoints, {len(spec.category_ids)} categories "
          f"({', '.join(derived.category_names[:6])}{', ...' if len(spec.category_ids) > 6 else ''})")
    print(f"flip pairs ({len(spec.flip_pairs)}): " + ", ".join(f"{names[a]}-{names[b]}" for a, b in spec.flip_pairs))
    print(f"no side, mapped to themselves: {', '.join(derived.centre_keypoints) or 'none'}")
    print(f"skeleton: {len(spec.skeleton)} limbs, numbered from {derived.skeleton_base} in the file"
          f"{' (as in COCO)' if derived.skeleton_base == 1 else ''}")
    if derived.unpaired_keypoints:
        print(f"CHECK: a side in the name but no partner: {', '.join(derived.unpaired_keypoints)}")
    if not derived.sigmas_given:
        print(f"WARNING: no --sigmas: every keypoint has the default OKS sigma {DEFAULT_SIGMA}; "
              "OKS-AP depends on them, so give your dataset's sigmas")
    print(f"rescoring: {len(spec.rescore_limbs)} limbs, torso limbs {list(spec.rescore_torso_limbs) or 'all'}")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
