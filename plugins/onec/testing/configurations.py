"""What the fake infobase publishes: entity sets and their properties, by configuration.

``BP30`` follows 1C:Бухгалтерия предприятия 3.0 as reference §3 and public clients show it:
counterparties with ``ИНН``/``НаименованиеПолное``/``Комментарий`` and the
``КонтактнаяИнформация`` section (``Тип``, ``Вид_Key``, ``Представление``, ``НомерТелефона``,
``АдресЭП``…), bank and cash receipts whose counterparty is the composite
``Контрагент`` + ``Контрагент_Type``, and the customer invoice (БП has no customer order).

``LEGACY`` is a second configuration, shaped like older releases and other lines: no
``НаименованиеПолное``/``ЮридическоеФизическоеЛицо``, the counterparty's note is
``ДополнительнаяИнформация``, contact rows have only ``Тип``/``Вид_Key``/``Представление``/
``ЗначенияПолей`` (no structured phone or email), and orders are ``Document_ЗаказПокупателя``.
A client that names a property the configuration lacks gets a 400 here, as from 1C, so it
has to read ``$metadata``.

Types are EDM's: a reference is ``Edm.Guid``, an enumeration ``Edm.String`` (its value's
name), a composite reference two ``Edm.String``s (lexema-ecm docs, "Получение данных"), a
tabular section a ``Collection(StandardODATA.<Set>_<Section>_RowType)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

G, S, B, D, N, I64 = "Edm.Guid", "Edm.String", "Edm.Boolean", "Edm.DateTime", "Edm.Double", "Edm.Int64"
CATALOG = {"Ref_Key": G, "DataVersion": S, "DeletionMark": B, "Code": S, "Description": S,
           "Predefined": B, "PredefinedDataName": S}
DOCUMENT = {"Ref_Key": G, "DataVersion": S, "DeletionMark": B, "Number": S, "Date": D, "Posted": B}
COUNTERPARTIES = "Catalog_Контрагенты"
CONTACTS = "Catalog_Контрагенты_КонтактнаяИнформация"
BANK = "Document_ПоступлениеНаРасчетныйСчет"
CASH = "Document_ПриходныйКассовыйОрдер"


def collection(entity: str, section: str) -> str:
    return f"Collection(StandardODATA.{entity}_{section}_RowType)"


@dataclass(frozen=True)
class Configuration:
    """Entity sets (name → property → EDM type); ``sections`` maps a tabular section's own
    entity set to (owner set, section property)."""

    name: str
    sets: dict[str, dict[str, str]]
    sections: dict[str, tuple[str, str]] = field(default_factory=dict)
    order: str = ""  # where the plugin is expected to put orders


def _receipts(counterparty_kind: str = S) -> dict[str, dict[str, str]]:
    common = {**DOCUMENT, "ВидОперации": S, "Организация_Key": G, "Контрагент": counterparty_kind,
              "Контрагент_Type": S, "СуммаДокумента": N, "ВалютаДокумента_Key": G, "Комментарий": S}
    return {
        BANK: {**common, "СчетОрганизации_Key": G, "НазначениеПлатежа": S,
               "РасшифровкаПлатежа": collection(BANK, "РасшифровкаПлатежа")},
        CASH: {**common, "Принято": S, "Основание": S},
    }


BP30 = Configuration(
    name="БП 3.0",
    sets={
        COUNTERPARTIES: {**CATALOG, "Parent_Key": G, "IsFolder": B, "НаименованиеПолное": S,
                         "ИНН": S, "КПП": S, "ЮридическоеФизическоеЛицо": S, "Комментарий": S,
                         "ГоловнойКонтрагент_Key": G,
                         "КонтактнаяИнформация": collection(COUNTERPARTIES, "КонтактнаяИнформация")},
        CONTACTS: {"Ref_Key": G, "LineNumber": I64, "Тип": S, "Вид_Key": G, "Представление": S,
                   "ЗначенияПолей": S, "Страна": S, "Регион": S, "Город": S, "АдресЭП": S,
                   "ДоменноеИмяСервера": S, "НомерТелефона": S, "НомерТелефонаБезКодов": S,
                   "ВидДляСписка_Key": G, "Значение": S},
        **_receipts(),
        "Document_СчетНаОплатуПокупателю": {**DOCUMENT, "Организация_Key": G, "Контрагент_Key": G,
                                            "ДоговорКонтрагента_Key": G, "СуммаДокумента": N,
                                            "Комментарий": S},
        "Catalog_Организации": {**CATALOG, "ИНН": S},
    },
    sections={CONTACTS: (COUNTERPARTIES, "КонтактнаяИнформация")},
    order="Document_СчетНаОплатуПокупателю",
)

LEGACY = Configuration(
    name="legacy",
    sets={
        COUNTERPARTIES: {**CATALOG, "Parent_Key": G, "IsFolder": B, "ИНН": S, "КПП": S,
                         "ДополнительнаяИнформация": S,
                         "КонтактнаяИнформация": collection(COUNTERPARTIES, "КонтактнаяИнформация")},
        CONTACTS: {"Ref_Key": G, "LineNumber": I64, "Тип": S, "Вид_Key": G, "Представление": S,
                   "ЗначенияПолей": S},
        **_receipts(),
        "Document_ЗаказПокупателя": {**DOCUMENT, "Организация_Key": G, "Контрагент_Key": G,
                                     "СуммаДокумента": N, "Комментарий": S},
    },
    sections={CONTACTS: (COUNTERPARTIES, "КонтактнаяИнформация")},
    order="Document_ЗаказПокупателя",
)


def edmx(config: Configuration, published: set[str]) -> str:
    """The ``$metadata`` document of the published sets (OData v3 CSDL, as 1C serves it)."""
    types = []
    for name, props in config.sets.items():
        if name not in published:
            continue
        key = "".join(f'<PropertyRef Name="{k}"/>' for k in ("Ref_Key", "LineNumber") if k in props)
        rows = "".join(f'<Property Name="{p}" Type="{t}" Nullable="true"/>' for p, t in props.items())
        types.append(f'<EntityType Name="{name}"><Key>{key}</Key>{rows}</EntityType>')
    sets = "".join(f'<EntitySet Name="{n}" EntityType="StandardODATA.{n}"/>'
                   for n in config.sets if n in published)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<edmx:Edmx xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx" Version="1.0">'
        '<edmx:DataServices xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"'
        ' m:DataServiceVersion="3.0">'
        '<Schema xmlns="http://schemas.microsoft.com/ado/2009/11/edm" Namespace="StandardODATA">'
        + "".join(types)
        + '<EntityContainer Name="EnterpriseV8" m:IsDefaultEntityContainer="true">'
        + sets + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    )
