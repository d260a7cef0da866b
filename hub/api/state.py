"""What the HTTP app holds for its lifetime: the runtime, the ingest batcher, caches."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hub.engine.ingest import IngestBatcher
from hub.runtime import Runtime

OVERRIDES_TTL_S = 2.0


@dataclass
class AppState:
    rt: Runtime
    batcher: IngestBatcher
    started_at: float = field(default_factory=time.time)
    #: set by `leadhub serve` to report whether its worker and scheduler are running
    background_ok: object | None = None
    _overrides: dict[str, bool] = field(default_factory=dict)
    _overrides_at: float = 0.0

    def enabled(self, name: str) -> bool:
        """Connector switches, re-read from the store at most every two seconds."""
        now = time.monotonic()
        if now - self._overrides_at > OVERRIDES_TTL_S:
            self._overrides = self.rt.enabled_overrides()
            self._overrides_at = now
        return self.rt.is_enabled(name, self._overrides)

    def forget_overrides(self) -> None:
        self._overrides_at = 0.0
