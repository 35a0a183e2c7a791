"""Fleet tools: the instance catalogue, core-group plans for one host, and their renderings
(table, JSON, docker-compose, systemd), plus Flower for the app.

Nothing here imports a model runtime or talks to Redis at import time: ``posequeue plan`` runs on
a laptop.
"""

from posequeue.fleet.instances import CATALOGUE, Instance, UnknownInstanceError, get_instance
from posequeue.fleet.plan import Plan, PlanError, WorkerPlan, plan

__all__ = [
    "CATALOGUE",
    "Instance",
    "Plan",
    "PlanError",
    "UnknownInstanceError",
    "WorkerPlan",
    "get_instance",
    "plan",
]
