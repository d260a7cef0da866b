"""What plugin authors test with: strict fake servers on loopback, usable without pytest.

``FakeServer`` is the base for a fake of any HTTP API (routes, request records, strict
404 for the unexpected, fault injection); ``FakeAmoCRM`` is the amoCRM API v4 built on it.
``serving(fake)`` makes a pytest fixture of either: it starts the fake, yields it, and
fails the test on any unexpected request before stopping it.
"""

from hub.testing.fake_amocrm import FakeAmoCRM
from hub.testing.fake_graph import FakeGraph
from hub.testing.fakeserver import FakeServer, RecordedRequest, Response, serving

__all__ = ["FakeAmoCRM", "FakeGraph", "FakeServer", "RecordedRequest", "Response", "serving"]
