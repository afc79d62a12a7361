"""A catalog entry (:class:`ModelSpec`) and the task it belongs to (:class:`TaskInfo`): plain data.

Kept apart from :mod:`flarelet.bindings.ai.catalog` (the registry) so that a task's module can
define its entries without importing the registry, which imports the built-in tasks.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskInfo:
    """A model task as Cloudflare's catalog describes it (``task`` in ``ai/models/search``)."""

    id: str
    name: str  # "Automatic Speech Recognition"
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "description": self.description}


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry: Cloudflare's public facts plus the local weights that serve it."""

    id: str  # "@cf/openai/whisper"
    uuid: str
    description: str
    task: TaskInfo
    #: Cloudflare's JSON Schemas of the model's input and output (see ``input_schema``)
    inputs: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)
    outputs: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)
    #: the task's variant of its inputs and outputs for this model (Whisper: "classic" or "turbo")
    flavor: str = ""
    #: key of the local weights the task's loader resolves (Whisper: "tiny.en", "base")
    weights: str = ""
    #: what serves the id here, in words ("Whisper base"), for ``models()``
    served_by: str = ""
    beta: bool = False
    #: when set, the local weights are a stand-in for a model we do not have; says which.
    stand_in_for: str | None = None
    properties: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def input_schema(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.inputs))

    @property
    def output_schema(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.outputs))

    def search_entry(self, local_path: str | None = None) -> dict[str, Any]:
        """The model in Cloudflare's ``ai/models/search`` shape, plus flarelet's local facts."""
        props = [{"property_id": "beta", "value": "true" if self.beta else "false"}]
        props += [{"property_id": k, "value": v} for k, v in self.properties]
        if local_path is not None:
            served = f"local folder {local_path}"
        elif self.stand_in_for:
            served = f"{self.served_by} (stand-in: {self.stand_in_for} weights are not available offline)"
        else:
            served = self.served_by
        props.append({"property_id": "flarelet_weights", "value": served})
        description = self.description
        if self.stand_in_for and local_path is None:
            description += f" [flarelet: served locally by {self.served_by} as a stand-in for {self.stand_in_for}]"
        return {
            "id": self.uuid,
            "source": 1,
            "name": self.id,
            "description": description,
            "task": self.task.as_dict(),
            "tags": [],
            "properties": props,
        }
