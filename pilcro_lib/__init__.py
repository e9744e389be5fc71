"""pilcro_lib: importance landscapes, the P-objective and low-rank locally connected layers.

The shared library behind the PILCRO book. Modules, one idea each:

- ``utils``: seeding, device choice, provenance, argument checks
- ``data``: real datasets (MNIST, Fashion-MNIST, CIFAR-10, CelebA) and the shipped sample
- ``synthetic``: generated, seeded tasks (position tasks, pasted objects, translated variants)
- ``models``: the reference small net and a CIFAR-style ResNet-18
- ``train``: ``fit`` / ``evaluate`` with checkpoints and bit-exact resume
- ``results``: the chapters' headline numbers, printed by each chapter, gathered for the results
  page
- ``landscape``: importance landscapes and flatness figures
- ``paths``: the analytic path-count map of a network's skeleton
- ``objective``: the P-objective regulariser (our formulation)
- ``cost``: what the regulariser costs per training step
- ``experiments``: the arms and verdicts of the P-objective experiments
- ``layers``: locally connected, low-rank locally connected and CoordConv layers
- ``plotting``: figure helpers shared by the notebooks
- ``runs``: orchestration, apart from the science: run records, checkpoints, plans, executors
  (local, Ray, Slurm), notebook execution and sweeps (see :mod:`pilcro_lib.runs`)
- ``stats``: the book's statistical rule (Welch, Holm, detectable effects)
"""

__version__ = "0.1.0"
