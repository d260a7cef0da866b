"""Issue 10, Must show 2: the 75-versus-70 story with MoySklad as the books
(``tests/e2e/test_reconcile_story.py``'s scenario and test, with this module's ``books``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.test_moysklad import SOLUTION, fake_with


@pytest.fixture
def books() -> Iterator[Books]:
    """Issue 10, Must show 2: the story's books in the fake MoySklad. Each counterparty with
    its INN, phones (one free-text field, as people type them) and e-mail; each receipt a
    ``paymentin`` (bank) or ``cashin`` (cash), ``applicable`` for posted, in the trash for
    deleted; a supplier's refund is a receipt linked to a purchase return."""
    with fake_with() as fake:
        for c in STORY.books:
            fields = {k: v for k, v in (("inn", c.inn), ("phone", ", ".join(c.phones)),
                                        ("email", ", ".join(c.emails))) if v}
            agent = fake.add_counterparty(c.name, **fields)
            for r in c.receipts:
                fake.add_payment(agent, round(r.amount * 100), ago(r.days_ago),
                                 kind="cashin" if r.cash else "paymentin", applicable=r.posted,
                                 deleted=r.deleted,
                                 purchase_return=r.operation != CUSTOMER_PAYMENT)
        yield Books({"plugin": "moysklad", "base_url": fake.api_url, "token": SOLUTION,
                     "requests_per_3s": 45, "timeout_s": 5}, {}, lambda _data_dir: None)
        fake.assert_clean()
        assert fake.answered(429) == 0


# The story test itself, as tests/e2e/test_reconcile_story.py runs it with 1C: collected here
# with the ``books`` fixture above (and that module's fake amoCRM).
from tests.e2e.test_reconcile_story import (  # noqa: E402
    Books,
    amo,  # noqa: F401  (the fixture the story test takes)
)
from tests.e2e.test_reconcile_story import (  # noqa: E402
    test_75_paid_70_in_the_crm_via_the_cli_and_the_api as test_75_paid_70_with_moysklad_books,  # noqa: F401
)
from tests.reconcile_story import CUSTOMER_PAYMENT, STORY, ago  # noqa: E402
