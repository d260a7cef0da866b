"""The ``moysklad`` plugin: MoySklad JSON API 1.2 as a destination (a routed lead becomes a
counterparty and a customer order) and as an accounting reader (bank and cash receipts)."""
