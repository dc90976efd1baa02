"""The platforms file (``BACKSTOP_PLATFORMS_FILE``): a team's own HTTP platforms.

```yaml
platforms:
  iam:
    kind: http
    base_url: http://127.0.0.1:9101
    bearer_token_env: IAM_TOKEN          # the secret itself never in the file
    signing_secret_env: IAM_SIGNING_KEY
    timeout_seconds: 5
    max_in_flight: 8
    requests_per_second: 20
    sandbox: false
    api_name: iam_api                    # the name its errors carry; default "<name>_api"
```
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mutations.yamltext import (
    FileInvalid,
    LineMapping,
    Problem,
    load_yaml,
    read_file,
    unknown_keys,
)

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
KINDS = ("http",)
PLATFORM_KEYS = frozenset(
    {
        "kind",
        "base_url",
        "bearer_token_env",
        "signing_secret_env",
        "timeout_seconds",
        "max_in_flight",
        "requests_per_second",
        "sandbox",
        "api_name",
        "description",
    }
)
MAX_TIMEOUT_SECONDS = 300
MAX_IN_FLIGHT = 1000


@dataclass(frozen=True)
class HttpPlatform:
    """One HTTP platform; its secrets are read from the environment variables it names."""

    name: str
    base_url: str
    bearer_token_env: str = ""
    signing_secret_env: str = ""
    timeout_seconds: float = 10.0
    max_in_flight: int = 8
    requests_per_second: float | None = None
    sandbox: bool = False  # drills refuse a platform that is not a sandbox
    api_name: str = ""

    def bearer_token(self) -> str:
        return os.environ.get(self.bearer_token_env, "") if self.bearer_token_env else ""

    def signing_secret(self) -> str:
        return os.environ.get(self.signing_secret_env, "") if self.signing_secret_env else ""


def load_platforms_file(
    path: Path,
    *,
    environ: Mapping[str, str] = os.environ,
    reserved: frozenset[str] = frozenset(),
) -> list[HttpPlatform]:
    """Return the platforms a file declares, or raise FileInvalid naming the file, and
    the line and field of each problem."""
    text = read_file(Path(path))
    return parse_platforms(text, source=str(path), environ=environ, reserved=reserved)


def parse_platforms(
    text: str,
    *,
    source: str = "platforms file",
    environ: Mapping[str, str] = os.environ,
    reserved: frozenset[str] = frozenset(),
) -> list[HttpPlatform]:
    """Return the platforms a text declares; ``reserved`` names the built-in platforms a
    file may not redeclare, ``environ`` is where the named secrets must be set."""
    document = load_yaml(text, source=source)
    problems: list[Problem] = []
    if not isinstance(document, LineMapping):
        message = "must be a mapping with one key, platforms"
        raise FileInvalid([Problem(1, "platforms", message)], source=source)
    unknown_keys(document, frozenset({"platforms"}), "", problems)
    declared = document.get("platforms")
    if not isinstance(declared, LineMapping) or not declared:
        problems.append(
            Problem(
                document.line_of("platforms"), "platforms", "required mapping of name: platform"
            )
        )
        declared = LineMapping()
    platforms = []
    for name, raw in declared.items():
        platform = _parse_platform(name, raw, declared.lines[name], environ, reserved, problems)
        if platform is not None:
            platforms.append(platform)
    if problems:
        raise FileInvalid(sorted(problems, key=lambda p: p.line or 0), source=source)
    return platforms


def _parse_platform(
    name: str,
    raw: Any,
    line: int,
    environ: Mapping[str, str],
    reserved: frozenset[str],
    problems: list[Problem],
) -> HttpPlatform | None:
    field = f"platforms.{name}"
    count = len(problems)

    def problem(key: str, message: str) -> None:
        # A missing key is reported at the platform's name.
        where = raw.line_of(key, line) if isinstance(raw, LineMapping) else line
        problems.append(Problem(where, f"{field}.{key}" if key else field, message))

    if not NAME.match(name):
        problem("", "a platform name is lower-case letters, digits and _ (at most 40)")
    elif name in reserved:
        problem("", f"{name!r} is a built-in sandbox platform; choose another name")
    if not isinstance(raw, LineMapping):
        problem("", "must be a mapping with kind and base_url")
        return None
    unknown_keys(raw, PLATFORM_KEYS, field, problems)
    if raw.get("kind") not in KINDS:
        got = f"; got {raw['kind']!r}" if "kind" in raw else ""
        problem("kind", f"required: one of {', '.join(KINDS)}{got}")
    base_url = _base_url(raw.get("base_url"), problem)
    for key in ("bearer_token_env", "signing_secret_env"):
        _env_name(raw.get(key), key, environ, problem)
    timeout = _number(raw, "timeout_seconds", 10.0, problem, maximum=MAX_TIMEOUT_SECONDS)
    rate = _number(raw, "requests_per_second", None, problem)
    in_flight = raw.get("max_in_flight", 8)
    if isinstance(in_flight, bool) or not isinstance(in_flight, int):
        problem("max_in_flight", f"must be a whole number; got {in_flight!r}")
    elif not 1 <= in_flight <= MAX_IN_FLIGHT:
        problem("max_in_flight", f"must be between 1 and {MAX_IN_FLIGHT}; got {in_flight}")
    sandbox = raw.get("sandbox", False)
    if not isinstance(sandbox, bool):
        problem("sandbox", f"must be true or false; got {sandbox!r}")
    api_name = raw.get("api_name", f"{name}_api")
    if not isinstance(api_name, str) or not API_NAME.match(api_name):
        problem("api_name", f"a name such as {name}_api (letters, digits, _ . -); got {api_name!r}")
    if not isinstance(raw.get("description", ""), str):
        problem("description", "must be text")
    if len(problems) > count:
        return None
    return HttpPlatform(
        name=name,
        base_url=str(base_url),
        bearer_token_env=raw.get("bearer_token_env") or "",
        signing_secret_env=raw.get("signing_secret_env") or "",
        timeout_seconds=float(timeout or 10.0),
        max_in_flight=int(in_flight),
        requests_per_second=rate,
        sandbox=bool(sandbox),
        api_name=str(api_name),
    )


def _base_url(value: Any, problem: Any) -> str | None:
    if not isinstance(value, str) or not value:
        problem("base_url", "required, e.g. https://iam.internal.example")
        return None
    try:
        if any(c.isspace() for c in value):
            raise ValueError("it contains a space")
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError as error:
        problem("base_url", f"is not a URL ({error}); got {value!r}")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem("base_url", f"must be an http:// or https:// URL with a host; got {value!r}")
    elif parts.username is not None or parts.password is not None:
        problem("base_url", "must not carry credentials; name them in bearer_token_env")
    elif parts.query or parts.fragment:
        problem("base_url", "must not carry a query or a fragment")
    else:
        return value.rstrip("/")
    return None


def _env_name(value: Any, key: str, environ: Mapping[str, str], problem: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not ENV_NAME.match(value):
        problem(key, f"must name an environment variable (e.g. IAM_TOKEN); got {value!r}")
    elif not environ.get(value):
        problem(key, f"environment variable {value} is not set; the secret is read from it")


def _number(
    raw: LineMapping, key: str, default: float | None, problem: Any, maximum: float | None = None
) -> float | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problem(key, f"must be a number; got {value!r}")
        return None
    if value <= 0 or (maximum is not None and value > maximum):
        limit = f" and at most {maximum:g}" if maximum is not None else ""
        problem(key, f"must be more than 0{limit}; got {value!r}")
        return None
    return float(value)
