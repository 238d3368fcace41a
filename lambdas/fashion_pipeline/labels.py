"""The label catalogue: DeepFashion2 category ids, canonical names and the output mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping

# DeepFashion2 category ids 1..13. The dataset's own files say "short sleeve top"; these are
# the snake_case names of its COCO converter and of the seed's model, so we map by id only.
CATEGORY_NAMES: dict[int, str] = {
    1: "short_sleeved_shirt",
    2: "long_sleeved_shirt",
    3: "short_sleeved_outwear",
    4: "long_sleeved_outwear",
    5: "vest",
    6: "sling",
    7: "shorts",
    8: "trousers",
    9: "skirt",
    10: "short_sleeved_dress",
    11: "long_sleeved_dress",
    12: "vest_dress",
    13: "sling_dress",
}
CANONICAL_NAMES = frozenset(CATEGORY_NAMES.values())

# The seed's final model folded the rare sling classes into their nearest neighbours.
DEFAULT_MAPPING: dict[str, str | None] = {"sling": "vest", "sling_dress": "vest_dress"}

# Rekognition refuses a longer label name in a manifest: "The length of a label name is too
# long. The maximum length is 256 characters." (ERROR_INVALID_LABEL_NAME_LENGTH,
# https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/tm-debugging-json-line-errors.html).
# The API model's DatasetLabel says 255, but it is the shape ListDatasetLabels answers with,
# not a rule of import.
MAX_LABEL_CHARS = 256


class LabelMappingError(ValueError):
    """A label mapping that cannot be applied."""


@dataclass(frozen=True, eq=False)
class LabelCatalogue:
    """Maps canonical category names to output labels, with one class id per label.

    ``mapping`` overrides the identity: ``{"sling": "vest"}`` relabels, ``{"sling": null}``
    excludes the category (its boxes are reported as ``label_excluded``).
    """

    mapping: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_MAPPING))
    # The categories annotations may name: DeepFashion2's by default, a COCO file's own otherwise.
    categories: frozenset[str] = CANONICAL_NAMES
    _class_ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mapping) - self.categories)
        if unknown:
            raise LabelMappingError(
                f"label mapping names unknown categories {unknown}; "
                f"known: {sorted(self.categories)}"
            )
        for source, target in self.mapping.items():
            if target is not None and (not isinstance(target, str) or not target.strip()):
                raise LabelMappingError(
                    f"label mapping for {source!r} must be a non-empty string or null, got {target!r}"
                )
        labels = sorted({self.label_for(name) for name in self.categories} - {None})
        if not labels:
            raise LabelMappingError("label mapping excludes every category")
        for label in labels:
            if len(label) > MAX_LABEL_CHARS:
                raise LabelMappingError(
                    f"label {label!r} is {len(label)} characters long; Rekognition accepts label names of at most {MAX_LABEL_CHARS}"
                )
        # Class ids depend only on the catalogue, never on the data, so every line of every
        # manifest (and every fragment assembled later) agrees on them.
        object.__setattr__(self, "_class_ids", {label: i for i, label in enumerate(labels)})

    @classmethod
    def from_json(
        cls, text: str | bytes, *, source: str = "label mapping", categories: frozenset[str] = CANONICAL_NAMES
    ) -> "LabelCatalogue":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LabelMappingError(f"{source}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise LabelMappingError(f"{source}: expected a JSON object of category -> label")
        try:
            return cls(mapping=data, categories=categories)
        except LabelMappingError as exc:
            raise LabelMappingError(f"{source}: {exc}") from exc

    def label_for(self, category: str) -> str | None:
        """The output label of a known category, or None when it is excluded or unknown."""
        if category not in self.categories:
            return None
        return self.mapping.get(category, category)

    @property
    def class_ids(self) -> dict[str, int]:
        return dict(self._class_ids)

    def class_id(self, label: str) -> int:
        return self._class_ids[label]

    @property
    def labels(self) -> list[str]:
        return list(self._class_ids)

    def to_json(self) -> str:
        return json.dumps(dict(sorted(self.mapping.items())), sort_keys=True)
