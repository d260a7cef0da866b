"""What the hub's processes write to their logs holds no phone, e-mail address or secret
(hard rule 6), whatever comes in and whatever the destinations answer.

A real cluster (api, worker, scheduler) gets leads, a body that goes to quarantine, forged
and oversized requests carrying contacts, and delivers to one receiver that first answers
500 echoing the lead back (as APIs echo invalid input in their errors) and to one whose
URL carries credentials and whose port is closed. Then every process's log is read whole:
it must mention those failures (so something was logged at all) and hold none of the
contacts, tokens, signing secrets or URL credentials.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from hub.testing.cluster import HubCluster, free_port, wait_until
from hub.testing.fakeserver import FakeServer, RecordedRequest, Response
from tests.conftest import ClusterFactory, ConfigWriter

ADMIN = "test-admin-token"
SECRETS = {
    "form": "form-token-Q7s9xK2m",
    "tilda": "tilda-token-Z3v8pL1c",
    "tg": "tg-secret-N4b6wT0y",
    "sign": "whsec_c2lnbmluZy1zZWNyZXQtZm9yLWxvZ3M=",
    "path": "path-key-H5j2rF8d",
    "query": "query-key-M1k4sW9e",
    "password": "url-pass-R6t3yU7i",
}
#: every way the contacts below may be written out
CONTACTS = [
    "9161234567", "916) 123-45-67", "916 123-45-67", "ivan.petrov@example.ru",
    "9035556677", "olga.s@example.org", "9267778899", "9998887766", "anna@example.com",
]

CONFIG = f"""
[hub]
dedup_window_minutes = 0
default_destinations = ["echoing", "down"]

[sources.site]
plugin = "webform"
token = "{SECRETS['form']}"

[sources.landing]
plugin = "tilda"
token = "{SECRETS['tilda']}"

[sources.bot]
plugin = "telegram"
secret_token = "{SECRETS['tg']}"

[destinations.echoing]
plugin = "webhook"
url = "{{echo_url}}/{SECRETS['path']}/in?key={SECRETS['query']}"
signing_secret = "{SECRETS['sign']}"

[destinations.down]
plugin = "webhook"
url = "http://relay:{SECRETS['password']}@127.0.0.1:{{closed_port}}/in?key={SECRETS['query']}"
timeout_s = 2
"""


class EchoingReceiver(FakeServer):
    """Answers the first ``failures`` leads with a 500 whose body is the lead itself."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.add_route("POST", f"/{SECRETS['path']}/in", self._in)

    def _in(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        if self.failures > 0:
            self.failures -= 1
            return Response(500, b"invalid lead: " + request.body, "text/plain")
        return Response.json({"ok": True})


def test_logs_hold_no_contact_or_secret(
    write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    with EchoingReceiver(failures=3) as receiver:
        config = CONFIG.replace("{echo_url}", receiver.base_url).replace(
            "{closed_port}", str(free_port()))
        hub = make_cluster(write_config(config)).start(workers=1)
        send_everything(hub)
        wait_until(lambda: len(receiver.requests_to("POST", f"/{SECRETS['path']}/in")) >= 6,
                   60, 0.2, "the echoing receiver's failures and then its leads")
        wait_until(lambda: attempts(hub, "down") >= 2, 60, 0.2, "tries at the closed port")
        time.sleep(0.5)  # the last failures' log lines
        hub.stop()
        text = read_logs(hub.logs)

    assert "echoing" in text and "down" in text, "the failed deliveries were not logged at all"
    leaked = [s for s in [*CONTACTS, *SECRETS.values(), ADMIN] if s in text]
    assert not leaked, f"the logs hold {leaked}: {excerpt(text, leaked[0])}"
    long_digits = re.findall(r"\d{10,}", text)
    assert not [d for d in long_digits if d[-10:] in CONTACTS], long_digits


def send_everything(hub: HubCluster) -> None:
    c = hub.client
    lead = {"name": "Иван Петров", "phone": "+7 (916) 123-45-67", "email": "ivan.petrov@example.ru"}
    assert c.post("/hooks/site", params={"token": SECRETS["form"]}, data=lead).status_code == 200
    # a broken JSON body carrying contacts: quarantined, and the answer says why
    broken = b'{"phone": "+79035556677", "email": "olga.s@example.org", '
    r = c.post("/hooks/site", params={"token": SECRETS["form"]}, content=broken,
               headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    # forged: a wrong token, a wrong Telegram secret, a wrong admin token
    assert c.post("/hooks/site", params={"token": "wrong-" + SECRETS["form"]},
                  data={"phone": "+79267778899"}).status_code == 401
    update = {"update_id": 1, "message": {"message_id": 1, "date": 1733580000, "chat": {
        "id": 5, "type": "private"}, "from": {"id": 5, "is_bot": False, "first_name": "A"},
        "contact": {"phone_number": "+79267778899", "first_name": "A", "user_id": 5}}}
    assert c.post("/hooks/bot", json=update, headers={
        "X-Telegram-Bot-Api-Secret-Token": "wrong-" + SECRETS["tg"]}).status_code == 401
    assert c.get("/api/leads", headers={"Authorization": f"Bearer wrong-{ADMIN}"}).status_code == 401
    # too big, with a contact at its start
    huge = b"phone=%2B79998887766&message=" + b"x" * 2_000_000
    r = c.post("/hooks/site", params={"token": SECRETS["form"]}, content=huge,
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413, r.status_code
    # Tilda, twice (its retry), and a second form lead
    tilda = {"Name": "Анна", "Phone": "+7 999 888-77-66", "Email": "anna@example.com",
             "tranid": "1234567:42", "formid": "form1"}
    for _ in range(2):
        assert c.post("/hooks/landing", params={"token": SECRETS["tilda"]},
                      data=tilda).text == "ok"
    assert c.post("/hooks/site", headers={"X-Leadhub-Token": SECRETS["form"]},
                  json={"phone": "+79267778899", "name": "Пётр"}).status_code == 200


def attempts(hub: HubCluster, destination: str) -> int:
    page = hub.admin("GET", "/api/deliveries", params={"destination": destination}).json()
    return max((d["attempts"] for d in page["items"]), default=0)


def read_logs(directory: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(directory.glob("*.log")))


def excerpt(text: str, needle: str) -> str:
    at = text.find(needle)
    return json.dumps(text[max(0, at - 300):at + 100])
