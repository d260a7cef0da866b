"""Issue 10, Must show 2: the 75-versus-70 story with Business.Ru as the books
(``tests/e2e/test_reconcile_story.py``'s scenario and test, with this module's ``books``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plugins.businessru.testing import FakeBusinessRu
from tests.plugins.test_businessru import APP_ID, SECRET, settings


@pytest.fixture
def books() -> Iterator[Books]:
    """Issue 10, Must show 2: the story's books in the fake Business.Ru. Each counterparty
    a partner with its INN, phones (type 1) and e-mails (type 4); each receipt a
    ``paymentin`` (bank) or ``cashin`` (cash) with its operation (a customer's payment, or
    a supplier's refund), ``held`` for posted, ``deleted``."""
    with FakeBusinessRu(APP_ID, SECRET) as fake:
        for c in STORY.books:
            partner = fake.add_partner(c.name, inn=c.inn, phones=c.phones, emails=c.emails)
            for r in c.receipts:
                fake.add_payment(partner, r.amount, ago(r.days_ago),
                                 model="cashin" if r.cash else "paymentin",
                                 operation="customer" if r.operation == CUSTOMER_PAYMENT
                                 else "supplier_refund",
                                 held=r.posted, deleted=r.deleted)
        yield Books({"plugin": "businessru", **settings(fake.base_url, timeout_s=5)}, {},
                    lambda _data_dir: None)
        fake.assert_clean()


# The story test itself, as tests/e2e/test_reconcile_story.py runs it with 1C: collected here
# with the ``books`` fixture above (and that module's fake amoCRM).
from tests.e2e.test_reconcile_story import (  # noqa: E402
    Books,
    amo,  # noqa: F401  (the fixture the story test takes)
)
from tests.e2e.test_reconcile_story import (  # noqa: E402
    test_75_paid_70_in_the_crm_via_the_cli_and_the_api as test_75_paid_70_with_business_ru_books,  # noqa: F401
)
from tests.reconcile_story import CUSTOMER_PAYMENT, STORY, ago  # noqa: E402
