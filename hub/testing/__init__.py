"""What plugin authors test with: strict fake servers on loopback, usable without pytest.

``FakeServer`` is the base for a fake of any HTTP API (routes, request records, strict
404 for the unexpected, fault injection); a provider's own fake lives beside its plugin
(the amoCRM one is ``plugins.amocrm.testing.FakeAmoCRM``). ``serving(fake)`` makes a
pytest fixture of any fake: it starts it, yields it, and fails the test on any unexpected
request before stopping it.
"""

from hub.testing.fake_graph import FakeGraph
from hub.testing.fakeserver import FakeServer, RecordedRequest, Response, serving

__all__ = ["FakeGraph", "FakeServer", "RecordedRequest", "Response", "serving"]
