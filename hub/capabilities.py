"""What a connector class can do, declared as data and checked when its plugin loads.

A connector class lists its capabilities in ``capabilities`` (a frozenset of
``Capability``); the engine reads that set and nothing else: it looks up uncertain
deliveries only at a destination declaring ``LOOKUP``/``BATCH_LOOKUP``, holds no rate slot
around calls of a destination declaring ``COUNTS_OWN_REQUESTS``, and so on. Guessing from
which methods a class happens to override (``type(dest).lookup_many is not
Destination.lookup_many``) broke silently when a plugin inherited from another plugin's
class or wrapped a method; a declaration is read the same way everywhere.

Each capability names the kind of connector that may declare it and the methods that class
must implement (``REQUIREMENTS``). ``problems`` turns a class into the list of what is wrong
with its declaration, so discovery stops the hub at start naming the plugin, instead of
the first uncertain delivery finding that ``lookup_many`` is the base's stub.

Classes written before capabilities existed declare none; ``infer_legacy`` gives them the
set their overridden methods and the old ``annotates_duplicates``/``counts_own_requests``
flags stood for, once, when the class is defined (discovery logs a request to declare it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Capability(StrEnum):
    """One thing a connector class can do; the values are what ``GET /api/plugins`` shows."""

    #: Destination: ``lookup(item)`` finds a record an earlier, uncertain attempt created.
    LOOKUP = "lookup"
    #: Destination: ``lookup_many(items)`` finds the records of a whole interrupted batch.
    BATCH_LOOKUP = "batch_lookup"
    #: Destination: a duplicate lead becomes a note on the original's record.
    ANNOTATES_DUPLICATES = "annotates_duplicates"
    #: Destination: wraps each of its requests in ``context.request_slot()`` itself.
    COUNTS_OWN_REQUESTS = "counts_own_requests"
    #: Destination: ``send_report(report, key)`` delivers a reconcile run's report (a job's
    #: ``notify``).
    REPORTS = "reports"
    #: Source: the hub polls it (``PollingSource``: ``poll``, ``ack``).
    POLLING = "polling"
    #: Source: ``enrich(lead)`` fetches what a webhook only pointed at.
    ENRICHMENT = "enrichment"
    #: CRM reader: ``won_deals(since, until, pipelines)`` for reconciliation.
    CRM_READER = "crm_reader"
    #: Accounting reader: ``payments(since, until)`` for reconciliation.
    ACCOUNTING_READER = "accounting_reader"


@dataclass(frozen=True)
class Requirement:
    """Who may declare a capability and what the declaring class must implement.

    ``base`` names the SDK class the capability comes with: a subclass of it must declare
    the capability (it is what the class is), and only a subclass of it may.
    """

    kinds: frozenset[str]
    methods: tuple[str, ...] = ()
    base: str | None = None


REQUIREMENTS: dict[Capability, Requirement] = {
    Capability.LOOKUP: Requirement(frozenset({"destination"}), ("lookup",)),
    Capability.BATCH_LOOKUP: Requirement(frozenset({"destination"}), ("lookup_many",)),
    Capability.ANNOTATES_DUPLICATES: Requirement(frozenset({"destination"})),
    Capability.COUNTS_OWN_REQUESTS: Requirement(frozenset({"destination"})),
    Capability.REPORTS: Requirement(frozenset({"destination"}), ("send_report",)),
    Capability.POLLING: Requirement(frozenset({"source"}), ("poll", "ack"), "PollingSource"),
    Capability.ENRICHMENT: Requirement(frozenset({"source"}), ("enrich",)),
    Capability.CRM_READER: Requirement(frozenset({"crm_reader"}), ("won_deals",), "CrmReader"),
    Capability.ACCOUNTING_READER: Requirement(
        frozenset({"accounting_reader"}), ("payments",), "AccountingReader"),
}

#: The boolean class attributes capabilities replaced: setting one in a class body still
#: adds (True) or removes (False) its capability.
LEGACY_FLAGS: dict[str, Capability] = {
    "annotates_duplicates": Capability.ANNOTATES_DUPLICATES,
    "counts_own_requests": Capability.COUNTS_OWN_REQUESTS,
}

#: Modules whose classes are the SDK's bases: a method defined there is a stub, not an
#: implementation.
_SDK_MODULES = ("hub.connectors", "hub.sdk")


def is_sdk_class(cls: type) -> bool:
    return cls.__module__ in _SDK_MODULES or cls.__module__.startswith("hub.sdk.")


def implements(cls: type, method: str) -> bool:
    """True when ``cls`` or a non-SDK class it inherits from defines ``method``: the
    SDK base classes only hold stubs (``NotImplementedError``, ``return None``)."""
    for klass in cls.__mro__:
        if method in vars(klass):
            return not is_sdk_class(klass) and callable(vars(klass)[method])
    return False


def declares(cls: type) -> bool:
    """True when the body of ``cls``, or of a plugin class it inherits from, sets
    ``capabilities`` (read before ``Connector.__init_subclass__`` writes the settled set;
    a parent's answer is its ``capabilities_declared``)."""
    if "capabilities" in vars(cls):
        return True
    return any(not is_sdk_class(base) and bool(getattr(base, "capabilities_declared", False))
               for base in cls.__bases__)


def inherits(cls: type, base: str) -> bool:
    """True when ``cls`` is a subclass of the SDK class named ``base``."""
    return any(k.__name__ == base and is_sdk_class(k) for k in cls.__mro__)


def infer_legacy(cls: type, inherited: frozenset[Capability]) -> frozenset[Capability]:
    """The capabilities a class without a declaration stands for: the SDK base's own and
    those whose methods it implements."""
    kind = getattr(cls, "kind", "")
    found = {cap for cap, req in REQUIREMENTS.items()
             if kind in req.kinds and req.methods and all(implements(cls, m) for m in req.methods)}
    return inherited | found


def apply_legacy_flags(cls: type, capabilities: frozenset[Capability]) -> frozenset[Capability]:
    """Fold the old boolean flags a class body sets into its capabilities."""
    caps = set(capabilities)
    for flag, cap in LEGACY_FLAGS.items():
        if flag in vars(cls) and isinstance(vars(cls)[flag], bool):
            (caps.add if vars(cls)[flag] else caps.discard)(cap)
    return frozenset(caps)


def problems(cls: type) -> list[str]:
    """What is wrong with a connector class's declaration, in words naming the class."""
    kind = str(getattr(cls, "kind", ""))
    caps: object = getattr(cls, "capabilities", frozenset())
    name = cls.__qualname__
    if not isinstance(caps, frozenset) or not all(isinstance(c, Capability) for c in caps):
        return [f"{name}.capabilities must be a frozenset of hub.sdk.Capability, got {caps!r}"]
    out = []
    for cap, req in REQUIREMENTS.items():
        if cap not in caps:
            if req.base is not None and inherits(cls, req.base):
                out.append(f"{name} is a {req.base} and must declare {cap.name}")
            continue
        if kind not in req.kinds:
            out.append(f"{name} is a {kind} and cannot declare {cap.name} "
                       f"(a capability of a {' or '.join(sorted(req.kinds))})")
            continue
        if req.base is not None and not inherits(cls, req.base):
            out.append(f"{name} declares {cap.name} but is not a {req.base}")
            continue
        missing = [m for m in req.methods if not implements(cls, m)]
        if missing:
            out.append(f"{name} declares {cap.name} but does not implement "
                       + ", ".join(f"{m}()" for m in missing))
    return out
