"""PodGroups for gang schedulers: a job with ``schedulerName`` gets one when the cluster serves a PodGroup API.

Volcano and scheduler-plugins' coscheduling place a group's pods all at once or not at all, once ``minMember`` of them
(and ``minResources``) fit. Which API applies is read from the cluster (API discovery), never assumed: a job naming
a scheduler whose PodGroup CRD is not installed runs without a group (the operator's own gang start still holds it).

    scheduler-plugins  scheduling.x-k8s.io/v1alpha1   pods labelled      scheduling.x-k8s.io/pod-group=<group>
    Volcano            scheduling.volcano.sh/v1beta1  pods annotated     scheduling.k8s.io/group-name=<group>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class PodGroupAPI:
    group: str
    version: str
    mark: str  # the pod label (scheduler-plugins) or annotation (Volcano) that names the group
    mark_is_label: bool
    plural: str = "podgroups"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


SCHEDULER_PLUGINS = PodGroupAPI("scheduling.x-k8s.io", "v1alpha1", "scheduling.x-k8s.io/pod-group", True)
VOLCANO = PodGroupAPI("scheduling.volcano.sh", "v1beta1", "scheduling.k8s.io/group-name", False)
APIS = (SCHEDULER_PLUGINS, VOLCANO)


def choose(scheduler_name: str | None, served: list[PodGroupAPI]) -> PodGroupAPI | None:
    """The PodGroup API for a job's scheduler among those the cluster serves: none without a scheduler name; when
    both are served, Volcano's for a scheduler named like volcano, scheduler-plugins' otherwise."""
    if not scheduler_name or not served:
        return None
    if len(served) == 1:
        return served[0]
    return VOLCANO if "volcano" in scheduler_name else SCHEDULER_PLUGINS


_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)")


def min_resources(worker: dict[str, Any], members: int) -> dict[str, str] | None:
    """``members`` x one rendered worker pod's requests (a limit stands in for a missing request, as the API server
    defaults it), e.g. {"nvidia.com/gpu": "8", "memory": "64Gi"}; None when the pod asks for nothing or a quantity
    is in a form not summed here (exponents): then the group is sized by minMember alone."""
    total: dict[str, str] = {}
    for container in worker["spec"]["containers"]:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, quantity in asked.items():
            match = _QUANTITY.fullmatch(str(quantity))
            if match is None:
                return None
            number, unit = match.groups()
            try:
                amount = Decimal(number) * members
                if name in total:
                    previous = _QUANTITY.fullmatch(total[name])
                    if previous is None or previous.group(2) != unit:
                        return None  # mixed units across containers: not summed here
                    amount += Decimal(previous.group(1))
            except InvalidOperation:
                return None
            total[name] = f"{amount.normalize():f}{unit}"
    return total or None
