"""Motion analysis over a job's poses: tracks, gap filling and filters, joint and segment angles,
summaries, and the files made from them (CSV, JSON, OpenSim, plots, report, overlay video).

The core (``tracks``, ``gaps``, ``filters``, ``angles``, ``summary``, ``pipeline``) is pure numpy and
scipy over the output contract; it imports no model runtime and no Celery. ``task`` is the one
Celery task, ``overlay`` the one module that needs PyAV.
"""
