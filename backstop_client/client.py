"""Clients of Backstop's REST API (``/api/v1/``) for agents: ``Client`` (blocking) and
``AsyncClient`` (asyncio), with the same methods and answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from backstop_client.errors import RateLimited, error_for
from backstop_client.models import Action, Decision

API = "/api/v1"
VERSION = "0.1.0"


def _headers(token: str) -> dict[str, str]:
    if not isinstance(token, str) or not token.strip():
        raise ValueError("token: give the agent's API token (bst_<id>_<secret>).")
    return {
        "Authorization": f"Bearer {token.strip()}",
        "Accept": "application/json",
        "User-Agent": f"backstop-client/{VERSION}",
    }


def _base_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url: give Backstop's address, e.g. http://127.0.0.1:8000; got {url!r}.")
    return url.rstrip("/")


def _decision_path(decision_id: str) -> str:
    if not isinstance(decision_id, str) or not decision_id:
        raise ValueError(f"decision_id: give a dec_ id; got {decision_id!r}.")
    return f"{API}/decisions/{quote(decision_id, safe='')}/"


def _check_wait(timeout: float, poll: float) -> None:
    if timeout < 0:
        raise ValueError(f"timeout: must be 0 or more seconds; got {timeout}.")
    if poll <= 0:
        raise ValueError(f"poll: must be more than 0 seconds; got {poll}.")


def _answer(response: httpx.Response) -> Any:
    """Return a successful response's JSON; raise the typed error of a refusal."""
    if response.is_success:
        return response.json()
    raise error_for(response)


def _poll_pause(deadline: float, poll: float) -> float | None:
    """Return how long to sleep before the next poll, or None once the deadline has passed."""
    remaining = deadline - time.monotonic()
    return min(poll, remaining) if remaining > 0 else None


def _limit_pause(deadline: float, poll: float, limited: RateLimited) -> float:
    """Return how long to sleep before polling again after a rate limit; raise the limit when
    it does not lift before the deadline (or does not say when it lifts)."""
    remaining = deadline - time.monotonic()
    if limited.retry_after is None or limited.retry_after >= remaining:
        raise limited
    return max(limited.retry_after, min(poll, remaining))


class Client:
    """Backstop's API for an agent, over one connection pool; close it, or use ``with``.

    >>> with Client("http://127.0.0.1:8000", token) as backstop:
    ...     decision = backstop.wait(backstop.propose(document).id, timeout=60)

    Refusals raise ``BackstopError`` subclasses (``Invalid``, ``Unauthorized``,
    ``Forbidden``, ``NotFound``, ``Conflict``, ``RateLimited``); a network failure raises
    httpx's ``httpx.HTTPError``. ``transport`` replaces httpx's (for tests, proxies).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _base_url(url)
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(token), timeout=timeout, transport=transport
        )

    def propose(self, decision: Mapping[str, Any]) -> Decision:
        """Submit a decision document; return it as stored, with the gate's verdict and its
        run. Sending the same id and payload again returns the stored decision
        (``created`` False); the same id with another payload raises ``Conflict``."""
        response = self._http.post(f"{API}/decisions/", json=dict(decision))
        return Decision.from_json(_answer(response), created=response.status_code == 201)

    def get(self, decision_id: str) -> Decision:
        """Return a decision with its run and its Mutation Log entries."""
        return Decision.from_json(self.request("GET", _decision_path(decision_id)))

    def wait(self, decision_id: str, timeout: float = 30.0, poll: float = 0.5) -> Decision:
        """Poll a decision every ``poll`` seconds until its run is terminal or ``timeout``
        seconds have passed; return the latest answer either way (a held decision stays
        ``awaiting_approval`` until a person decides). A rate limit that lifts before the
        deadline is waited out."""
        _check_wait(timeout, poll)
        deadline = time.monotonic() + timeout
        while True:
            try:
                latest = self.get(decision_id)
            except RateLimited as limited:
                time.sleep(_limit_pause(deadline, poll, limited))
                continue
            pause = _poll_pause(deadline, poll)
            if latest.terminal or pause is None:
                return latest
            time.sleep(pause)

    def list_actions(self) -> list[Action]:
        """Return the decision types the token may propose, with their action schemas and
        what the active policy does with typical values."""
        return [Action.from_json(a) for a in self.request("GET", f"{API}/actions/")["actions"]]

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Call any other route of the API (``/api/v1/...``); return its JSON, or raise its
        typed error."""
        return _answer(self._http.request(method, path, json=json, params=params))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio: the same methods, awaited; ``async with`` closes it."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _base_url(url)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(token), timeout=timeout, transport=transport
        )

    async def propose(self, decision: Mapping[str, Any]) -> Decision:
        """See ``Client.propose``."""
        response = await self._http.post(f"{API}/decisions/", json=dict(decision))
        return Decision.from_json(_answer(response), created=response.status_code == 201)

    async def get(self, decision_id: str) -> Decision:
        """See ``Client.get``."""
        return Decision.from_json(await self.request("GET", _decision_path(decision_id)))

    async def wait(self, decision_id: str, timeout: float = 30.0, poll: float = 0.5) -> Decision:
        """See ``Client.wait``."""
        _check_wait(timeout, poll)
        deadline = time.monotonic() + timeout
        while True:
            try:
                latest = await self.get(decision_id)
            except RateLimited as limited:
                await asyncio.sleep(_limit_pause(deadline, poll, limited))
                continue
            pause = _poll_pause(deadline, poll)
            if latest.terminal or pause is None:
                return latest
            await asyncio.sleep(pause)

    async def list_actions(self) -> list[Action]:
        """See ``Client.list_actions``."""
        body = await self.request("GET", f"{API}/actions/")
        return [Action.from_json(a) for a in body["actions"]]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """See ``Client.request``."""
        return _answer(await self._http.request(method, path, json=json, params=params))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
