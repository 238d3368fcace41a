"""COCO object-detection files, including DeepFashion2's ``deepfashion2_to_coco.py`` output.

COCO boxes are ``[x, y, width, height]``; they are turned into ``[x1, y1, x2, y2]`` here so
that every reader hands the same box shape to the conversion rules. Category names come
from the file's own ``categories``: for DeepFashion2 they are the catalogue's snake_case
names; for any other COCO dataset they become that dataset's catalogue.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from .records import AnnotationError, ImageAnnotation, Rejection, SourceBox


class CocoFile:
    """A parsed COCO document: its categories and, per image, its annotations."""

    def __init__(self, data: bytes | str, *, source: str) -> None:
        self.source = source
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AnnotationError("invalid_json", f"not valid JSON: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("images"), list) or not isinstance(
            document.get("annotations"), list
        ):
            raise AnnotationError("not_an_annotation", "not a COCO file: 'images' and 'annotations' lists expected")
        self.categories: dict[Any, str] = {}
        for category in document.get("categories") or []:
            if isinstance(category, dict) and "id" in category and isinstance(category.get("name"), str):
                self.categories[category["id"]] = category["name"]
        self._images = document["images"]
        self._by_image: dict[Any, list[dict[str, Any]]] = {}
        self.orphans: list[Rejection] = []
        image_ids = {image.get("id") for image in self._images if isinstance(image, dict)}
        for index, annotation in enumerate(document["annotations"]):
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            if image_id not in image_ids:
                label = annotation.get("id", index) if isinstance(annotation, dict) else index
                self.orphans.append(
                    Rejection(source, None, "orphan_annotation", f"annotation {label} refers to no image (image_id {image_id!r})", f"annotation {label}")
                )
                continue
            self._by_image.setdefault(image_id, []).append(annotation)

    @property
    def category_names(self) -> frozenset[str]:
        return frozenset(self.categories.values())

    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self) -> Iterator[ImageAnnotation | AnnotationError]:
        """Images in file-name order (independent of the order in the file)."""
        ordered = sorted(
            (image for image in self._images if isinstance(image, dict)),
            key=lambda image: (str(image.get("file_name", "")), str(image.get("id"))),
        )
        for _ in range(len(self._images) - len(ordered)):
            yield AnnotationError("not_an_annotation", "an 'images' entry is not an object", self.source)
        for image in ordered:
            file_name = image.get("file_name")
            where = f"{self.source}#image{image.get('id')}"
            if not isinstance(file_name, str) or not file_name:
                yield AnnotationError("not_an_annotation", f"image {image.get('id')!r} has no file_name", where)
                continue
            annotations = self._by_image.get(image.get("id"), [])
            pair_ids = {a.get("pair_id") for a in annotations if a.get("pair_id") is not None}
            yield ImageAnnotation(
                source=where,
                image_candidates=(file_name,),
                pair_id=str(min(pair_ids, key=str)) if pair_ids else None,
                boxes=[self._box(annotation, index) for index, annotation in enumerate(annotations)],
            )

    def _box(self, annotation: dict[str, Any], index: int) -> SourceBox:
        item = f"annotation {annotation.get('id', index)}"
        bbox = annotation.get("bbox")
        xyxy: Any = bbox
        if isinstance(bbox, list) and len(bbox) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox
        ):
            x, y, w, h = bbox
            xyxy = [x, y, x + w, y + h]
        category_id = annotation.get("category_id")
        return SourceBox(item, self.categories.get(category_id), category_id, xyxy)
