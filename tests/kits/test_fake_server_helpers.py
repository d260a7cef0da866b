"""``FakeServer.require_api_key`` and ``limit_rate``: the documented helpers answer like an
API that checks a key and counts requests over a sliding second."""

from __future__ import annotations

import httpx

from hub.testing import FakeServer, RecordedRequest, Response


class Api(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.add_route("GET", "/items/{id}", self._item)

    def _item(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        return Response.json({"id": params["id"]}, headers={"X-Request-Id": "r1"})


def test_api_key_and_rate_limit() -> None:
    with Api() as api, httpx.Client(base_url=api.base_url) as client:
        api.require_api_key("k1", header="X-Api-Key", scheme="")
        api.limit_rate(2, retry_after="3")
        assert client.get("/items/1").status_code == 401
        ok = client.get("/items/1", headers={"X-Api-Key": "k1"})
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "r1"
        assert client.get("/items/2", headers={"X-Api-Key": "k1"}).status_code == 200
        refused = client.get("/items/3", headers={"X-Api-Key": "k1"})
        assert (refused.status_code, refused.headers.get("retry-after")) == (429, "3")
        assert api.answered(429) == 1 and api.answered(401) == 1
        api.assert_clean()
