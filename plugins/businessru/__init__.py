"""Business.Ru (Class365): destination (customer orders with partners) and accounting reader."""

from plugins.businessru.plugin import (
    BusinessRuConfig,
    BusinessRuDestination,
    BusinessRuPayments,
    leadhub_register_connectors,
)

__all__ = ["BusinessRuConfig", "BusinessRuDestination", "BusinessRuPayments",
           "leadhub_register_connectors"]
