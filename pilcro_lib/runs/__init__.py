"""Orchestration of runs: records, planning, executors, notebook execution and sweeps.

Apart from the science modules of :mod:`pilcro_lib`: how a run is stored, planned or scheduled
never decides its numbers. ``python -m pilcro_lib.runs plan|compute NOTEBOOK`` is
:mod:`pilcro_lib.runs.cli`.
"""
