"""The report: what assembly made of its input, and everything it left out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any, Iterator


@dataclass
class SplitCounts:
    images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "boxes": dict(sorted(self.boxes.items())), "bytes": self.bytes}


def write_report(out: IO[str], summary: dict[str, Any], rejections: Iterator[dict[str, Any]]) -> None:
    """report.json: the summary, then every rejection, streamed (the list can be long)."""
    out.write('{"summary": ')
    json.dump(summary, out, indent=2, ensure_ascii=False)
    out.write(',\n "rejected": [')
    for number, rejection in enumerate(rejections):
        out.write(",\n  " if number else "\n  ")
        json.dump(rejection, out, ensure_ascii=False, sort_keys=True)
    out.write("\n ]\n}\n")
