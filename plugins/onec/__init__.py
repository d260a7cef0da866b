"""``onec``: 1C:Enterprise over its standard OData interface (``…/odata/standard.odata``).

A destination (a lead becomes a counterparty with its contacts and a customer order,
exactly once) and an accounting reader (posted customer payments for reconciliation), both
configured by one ``[destinations.NAME]`` table. The fake infobase for tests is
``plugins.onec.testing.FakeOneC``.
"""

from plugins.onec.config import OneCConfig
from plugins.onec.destination import OneCDestination
from plugins.onec.reader import OneCPayments

__all__ = ["OneCConfig", "OneCDestination", "OneCPayments"]
