"""pilcro_lib: importance landscapes, the P-objective and low-rank locally connected layers.

The shared library behind the PILCRO book. Modules, one idea each:

- ``utils``: seeding, device choice, provenance, argument checks
- ``data``: real datasets (MNIST, Fashion-MNIST, CIFAR-10, CelebA) and the shipped sample
- ``synthetic``: generated, seeded tasks (position tasks, pasted objects, translated variants)
- ``models``: the reference small net and a CIFAR-style ResNet-18
- ``train``: ``fit`` / ``evaluate`` with checkpoints and bit-exact resume
- ``checkpoint``: crash-safe, code-free checkpoint files and a lock per run
- ``fingerprint``: what identifies a run (descriptions of data, models, functions; code fingerprint)
- ``records``: run records with provenance, keyed by everything that decides the run
- ``results``: the chapters' headline numbers for the results page
- ``landscape``: importance landscapes and flatness figures
- ``paths``: the analytic path-count map of a network's skeleton
- ``objective``: the P-objective regulariser (our formulation)
- ``cost``: what the regulariser costs per training step
- ``experiments``: the arms and verdicts of the P-objective experiments
- ``layers``: locally connected, low-rank locally connected and CoordConv layers
- ``plotting``: figure helpers shared by the notebooks
- ``sweep``: parameter sweeps of a notebook through papermill
- ``execute``: run a notebook in place with checked parameters
- ``runs``, ``plans``, ``executors``: plan a chapter's missing runs and compute them (local, Ray, Slurm)
- ``stats``: the book's statistical rule (Welch, Holm, detectable effects)
"""

__version__ = "0.1.0"
