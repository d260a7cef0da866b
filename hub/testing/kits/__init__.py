"""Contract-test kits: one pytest base class per connector kind, in the spirit of
singer-sdk's standard tests. Subclass one in a test module, set a few attributes (the
connector class, its settings, its payload files or its fake server, how to sign), and
pytest runs the contract its kind keeps. See ``docs/writing-plugins.md``, "Testing your
plugin"."""

from hub.testing.kits.destination import DestinationHub, DestinationKit
from hub.testing.kits.reader import ReaderKit, ReaderPlace
from hub.testing.kits.source import SourceKit

__all__ = ["DestinationHub", "DestinationKit", "ReaderKit", "ReaderPlace", "SourceKit"]
