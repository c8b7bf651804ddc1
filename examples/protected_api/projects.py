"""The example's data: projects, each owned by one organization, kept in memory."""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Project:
    id: str
    organization_id: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ProjectStore:
    """Projects by organization. Every method takes the organization: there is no
    way to read across organizations, so a handler cannot forget the tenant check
    in the lookup itself (the handler still checks the token's org_id first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._by_org: dict[str, list[Project]] = {}

    def list(self, organization_id: str) -> list[Project]:
        with self._lock:
            return list(self._by_org.get(organization_id, ()))

    def create(self, organization_id: str, name: str) -> Project:
        with self._lock:
            project = Project(f"proj_{next(self._ids)}", organization_id, name)
            self._by_org.setdefault(organization_id, []).append(project)
            return project
