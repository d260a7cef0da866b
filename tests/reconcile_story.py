"""The 75-versus-70 story as data (issue 10, Must show 1), for any accounting side.

"A wholesale department closed 75 clients in a month; its CRM showed 70." The books hold
75 paying clients (posted, not deleted customer receipts), the CRM 70 of them as won
deals, typed by different people: managers' phone formats (``8 (916) …``, ``+7 916 …``,
bare digits), a company the CRM knows only by its tax id under a trade name, a name typo,
an e-mail upper-cased in the books, split payments and split deals. Around them, what must
not count: unposted and deleted receipts, a supplier's refund, a deal lost, a deal won
before the lookback window, a won deal still inside the payment grace, the office
switchboard typed into six contacts. Expected: exactly the 5 missing clients
(``missing_in_crm``), the 3 won-but-unpaid deals (``missing_in_accounting``) and the one
sum 25 % off (``amount_mismatch``; the one 0.5 % off is within tolerance), nothing else.

``STORY`` is plain data; ``seed_crm`` puts its CRM side into the fake amoCRM, and each
accounting fake seeds ``STORY.books`` its own way (1C counterparties and receipts,
MoySklad ``paymentin``/``cashin``, …). Dates are days before the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from plugins.amocrm.testing import FakeAmoCRM

CUSTOMER_PAYMENT = "ОплатаПокупателя"
SUPPLIER_REFUND = "ВозвратОтПоставщика"
LOOKBACK_DAYS = 30
GRACE_DAYS = 3
LOST = 143


@dataclass(frozen=True)
class Receipt:
    """A bank (or, ``cash=True``, cash) receipt in the books."""

    amount: float
    days_ago: float
    cash: bool = False
    operation: str = CUSTOMER_PAYMENT
    posted: bool = True
    deleted: bool = False

    @property
    def is_payment(self) -> bool:
        """What an accounting reader must yield: posted, not deleted, from a customer."""
        return self.posted and not self.deleted and self.operation == CUSTOMER_PAYMENT


@dataclass(frozen=True)
class Counterparty:
    """A client (or supplier) in the books, as the bookkeeper typed it."""

    name: str
    receipts: tuple[Receipt, ...]
    inn: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()

    @property
    def paid(self) -> float:
        return sum(r.amount for r in self.receipts if r.is_payment)


@dataclass(frozen=True)
class Deal:
    price: int
    days_ago: float
    status: int = 142


@dataclass(frozen=True)
class CrmClient:
    """A client in amoCRM: a company (``company=True``, with ``contact`` as its main
    contact) or a contact, as the managers typed it."""

    name: str
    deals: tuple[Deal, ...]
    company: bool = False
    inn: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    contact: str | None = None
    contact_phones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Story:
    books: list[Counterparty]
    crm: list[CrmClient]
    #: kind → the names the flags must show: the books' name for ``missing_in_crm`` and
    #: ``amount_mismatch``, the CRM's for ``missing_in_accounting``.
    expected: dict[str, set[str]] = field(default_factory=dict)


SWITCHBOARD = ("+7 (495) 777-00-00", "8 495 777-00-00")  # the office's, typed everywhere


def _formats(i: int) -> tuple[str, str]:
    """(the books' spelling, the CRM's spelling) of client ``i``'s mobile."""
    d = f"916{1000000 + i * 137:07d}"
    eight = f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
    plus7 = f"+7 {d[:3]} {d[3:6]} {d[6:]}"
    return [(eight, plus7), (plus7, d), ("7" + d, eight)][i % 3]


def _plain(i: int) -> tuple[Counterparty, CrmClient]:
    """One of the 63 ordinary clients: same person, phone spelled differently; some pay
    in two receipts (bank and cash), some bought in two deals."""
    books_phone, crm_phone = _formats(i)
    total = 10_000 + 1_000 * i
    when = 2 + i % 20
    receipts = ((Receipt(total * 0.6, when), Receipt(total * 0.4, when - 1, cash=True))
                if i % 7 == 0 else (Receipt(total, when),))
    deals = ((Deal(total // 2, when + 1), Deal(total - total // 2, when + 2))
             if i % 11 == 0 else (Deal(total, when + 1),))
    extra = (SWITCHBOARD[0],) if i in (4, 9, 14, 19, 24, 29) else ()
    books = Counterparty(f"ООО «Оптовик {i:02d}»", receipts, phones=(books_phone,))
    if i % 5 == 0:
        crm = CrmClient(f"Оптовик {i:02d}", deals, company=True, phones=(crm_phone, *extra),
                        contact=f"Менеджер закупок {i:02d}")
    else:
        crm = CrmClient(f"Закупщик {i:02d}", deals, phones=(crm_phone, *extra))
    return books, crm


def build_story() -> Story:
    plain = [_plain(i) for i in range(63)]
    books = [b for b, _ in plain]
    crm = [c for _, c in plain]
    books += [
        # known in the CRM only by its tax id, under a trade name; paid once for two deals
        Counterparty("ООО «Ромашка»", (Receipt(250_000, 12),), inn="7707083893",
                     phones=("8 (495) 700-10-10",)),
        # the CRM misspelt her name and has her mobile, the books her landline
        Counterparty("Кузнецова Мария Ивановна", (Receipt(45_000, 8),), phones=("8 (495) 310-20-30",)),
        # the books upper-cased the e-mail
        Counterparty("Соколов Дмитрий", (Receipt(12_300, 15, cash=True),), emails=("SOKOLOV.D@MAIL.RU",)),
        # an unposted receipt beside a posted one: counting it would make a false mismatch
        Counterparty("ИП Орлов Сергей", (Receipt(30_000, 9), Receipt(15_000, 4, posted=False)),
                     phones=("8 (917) 222-33-44",)),
        # a duplicate receipt marked for deletion
        Counterparty("ООО «Берёзка»", (Receipt(18_000, 11), Receipt(18_000, 10, deleted=True)),
                     phones=("+7 (918) 444-55-66",)),
        # 0.5 % apart: within tolerance
        Counterparty("ООО «Точность»", (Receipt(200_000, 6),), phones=("8 (916) 900-00-05",)),
        # 25 % apart: the CRM says 100 000, the bank got 80 000
        Counterparty("ООО «Скидка»", (Receipt(80_000, 7),), phones=("8 (916) 900-00-25",)),
        # --- the five paying clients the CRM does not show
        # the CRM has his contact, but the deal was marked lost
        Counterparty("ИП Васильев Олег", (Receipt(27_000, 5),), phones=("8 (915) 123-00-01",)),
        # its deal was won 45 days ago, before the window; paid now
        Counterparty("ООО «Северный ветер»", (Receipt(64_000, 5),), inn="7801234567"),
        Counterparty("Григорьева Анна", (Receipt(8_500, 13),), emails=("grigorieva@yandex.ru",)),
        # its card holds the office switchboard, which six CRM contacts hold as well
        Counterparty("ООО «Офисный центр»", (Receipt(33_000, 14),), phones=(SWITCHBOARD[1],)),
        Counterparty("ИП Никитин", (Receipt(4_700, 3, cash=True),), phones=("+7 999 888-77-66",)),
        # --- not paying clients at all
        Counterparty("ИП Лебедев", (Receipt(9_000, 6, posted=False),), phones=("8 (921) 700-00-01",)),
        Counterparty("ООО «Ошибка ввода»", (Receipt(5_000, 6, deleted=True),),
                     phones=("8 (921) 700-00-02",)),
        Counterparty("ООО «ПоставщикСнаб»", (Receipt(40_000, 9, operation=SUPPLIER_REFUND),),
                     inn="7714000001", phones=("8 (921) 700-00-03",)),
    ]
    crm += [
        CrmClient("Ромашка Трейд", (Deal(150_000, 14), Deal(100_000, 13)), company=True,
                  inn="7707 083 893", contact="Ольга (закупки)", contact_phones=("+7 926 111-00-99",)),
        CrmClient("Кузнецова Марья Ивановна", (Deal(45_000, 9),), phones=("+7 903 555-17-17",)),
        CrmClient("Дмитрий С.", (Deal(12_300, 16),), emails=("sokolov.d@mail.ru",)),
        CrmClient("Сергей Орлов", (Deal(30_000, 10),), phones=("+79172223344",)),
        CrmClient("Берёзка", (Deal(18_000, 12),), company=True, phones=("89184445566",)),
        CrmClient("Точность", (Deal(201_000, 7),), company=True, phones=("+7 916 900 00 05",)),
        CrmClient("Скидка", (Deal(100_000, 8),), company=True, phones=("+7 916 900-00-25",)),
        CrmClient("Олег Васильев", (Deal(27_000, 6, status=LOST),), phones=("+7 915 123 00 01",)),
        CrmClient("Северный ветер", (Deal(64_000, 45),), company=True, inn="7801234567"),
        # --- won, not paid: three past the grace, one within it
        CrmClient("Тимофеев Павел", (Deal(15_000, 10),), phones=("+7 921 000-11-22",)),
        CrmClient("Альфа Строй", (Deal(120_000, 20),), company=True, inn="5003052454"),
        CrmClient("Елена (сайт)", (Deal(7_000, 6),), emails=("elena@example.org",)),
        CrmClient("Свежий клиент", (Deal(9_900, 1),), phones=("+7 921 000-33-44",)),
    ]
    expected = {
        "missing_in_crm": {"ИП Васильев Олег", "ООО «Северный ветер»", "Григорьева Анна",
                           "ООО «Офисный центр»", "ИП Никитин"},
        "missing_in_accounting": {"Тимофеев Павел", "Альфа Строй", "Елена (сайт)"},
        "amount_mismatch": {"ООО «Скидка»"},
    }
    return Story(books, crm, expected)


STORY = build_story()


def ago(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def seed_crm(fake: FakeAmoCRM, story: Story = STORY, now: datetime | None = None) -> None:
    """The story's CRM side in the fake amoCRM: companies with their main contact,
    contacts, and their deals (won, or lost)."""
    for client in story.crm:
        contacts: list[int] = []
        company = None
        if client.company:
            company = fake.add_company(client.name, inn=client.inn, phones=client.phones,
                                       emails=client.emails)
            if client.contact:
                contacts.append(fake.add_contact(client.contact, phones=client.contact_phones))
        else:
            contacts.append(fake.add_contact(client.name, phones=client.phones, emails=client.emails))
        for n, deal in enumerate(client.deals):
            fake.add_won_deal(f"{client.name}: поставка {n + 1}", deal.price,
                              closed_at=ago(deal.days_ago, now), status_id=deal.status,
                              contact_ids=contacts, company_id=company)


def paying_clients(story: Story = STORY) -> list[Counterparty]:
    return [c for c in story.books if c.paid > 0]
