"""Ablation campaigns: a sweep file expanded into frozen points, run here or as a SLURM job array,
watched point by point and collected into the ablation table and its figures.

* :mod:`dekr.sweeps.spec`: the sweep file (parameters, seeds, SLURM resources) and its points;
* :mod:`dekr.sweeps.campaign`: the frozen campaign in its folder, point run folders, train commands;
* :mod:`dekr.sweeps.status`: done / failed / running / pending / never run, per point;
* :mod:`dekr.sweeps.slurm`: job-array submission and the queue's view of it;
* :mod:`dekr.sweeps.results`: per-point results and the per-configuration table (CSV, Markdown, LaTeX);
* :mod:`dekr.sweeps.figures`: metric vs GFLOPs and the overlaid learning curves.

``scripts/sweep.py`` is the command line over these.
"""
from dekr.sweeps.campaign import Campaign
from dekr.sweeps.spec import Point, SweepError, SweepSpec, load_sweep

__all__ = ["Campaign", "Point", "SweepError", "SweepSpec", "load_sweep"]
