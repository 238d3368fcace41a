"""The functions' configuration, from their environment variables (infrastructure/api.py sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    model_parameter_prefix: str  # each dataset's pointer is <prefix>/<dataset>
    dataset_bucket: str
    activity_table: str
    auto_start: bool = False
    cors_origin: str = ""
    pointer_ttl_seconds: float = 60.0
    emulated: bool = False
    idle_minutes: int = 30
    default_dataset: str | None = None  # the dataset of a request that names none (None: the only one with a model)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model_parameter_prefix=os.environ.get("MODEL_PARAMETER_PREFIX", ""),
            dataset_bucket=os.environ.get("DATASET_BUCKET", ""),
            activity_table=os.environ.get("ACTIVITY_TABLE", ""),
            auto_start=_flag(os.environ.get("AUTO_START")),
            cors_origin=os.environ.get("CORS_ORIGIN", "").strip(),
            pointer_ttl_seconds=_number("POINTER_TTL_SECONDS", 60.0, 0.0),
            emulated=_flag(os.environ.get("CUSTOM_LABELS_EMULATED")),
            idle_minutes=int(_number("IDLE_MINUTES", 30, 1)),
            default_dataset=os.environ.get("DEFAULT_DATASET", "").strip() or None,
        )
