"""Service settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    service: str
    environment: str = "dev"

    @classmethod
    def load(cls, service: str) -> "Settings":
        return cls(service=service, environment=os.environ.get("APP_ENV", "dev"))
