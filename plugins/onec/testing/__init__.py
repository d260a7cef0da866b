"""The fake 1C infobase for tests: ``FakeOneC`` (standard OData on loopback) and the
configurations it can pretend to be (``BP30``, the default, and ``LEGACY``)."""

from plugins.onec.testing.configurations import BP30, LEGACY, Configuration
from plugins.onec.testing.fake import EMPTY, FakeOneC

__all__ = ["BP30", "EMPTY", "LEGACY", "Configuration", "FakeOneC"]
