"""Credentials for the downloads: rattler's authentication file, and what it adds to a request."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pixi_pack.errors import PixiPackError

Credentials = Mapping[str, Mapping[str, Any]]
"""An authentication file's content: host (``*.`` wildcards, ``s3://<bucket>``) -> credentials by kind."""


def load_auth_file(path: Path | None) -> Credentials:
    """Read a rattler authentication file (``--auth-file`` or ``$RATTLER_AUTH_FILE``): host -> credentials.

    Every credential pixi-pack uses is checked for its type here; unknown kinds are ignored.
    """
    if path is None:
        env = os.environ.get("RATTLER_AUTH_FILE")
        if not env:
            return {}
        path = Path(env)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        msg = f"could not read authentication file {path}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    except (ValueError, RecursionError) as exc:
        msg = f"could not read authentication file {path}: not valid JSON ({exc})"
        raise PixiPackError(msg) from exc
    if not isinstance(data, dict):
        msg = f"could not read authentication file {path}: expected a JSON object of host -> credentials"
        raise PixiPackError(msg)
    for host, credentials in data.items():
        _check_credentials(path, host, credentials)
    return data


_CREDENTIAL_FIELDS = {
    "BearerToken": None,
    "CondaToken": None,
    "BasicHTTP": {"username": True, "password": True},
    "S3Credentials": {"access_key_id": True, "secret_access_key": True, "session_token": False},
}
"""Each kind of credential: a string (None), or an object of string fields (required or not)."""


def _check_credentials(path: Path, host: str, credentials: object) -> None:
    def fail(field: str, wanted: str) -> PixiPackError:
        return PixiPackError(f"could not read authentication file {path}: {field} must be {wanted}")

    if not isinstance(credentials, dict):
        raise fail(json.dumps(host), "an object of credentials")
    for kind, fields in _CREDENTIAL_FIELDS.items():
        if kind not in credentials:
            continue
        value = credentials[kind]
        where = f"{json.dumps(host)}.{kind}"
        if fields is None:
            if not isinstance(value, str):
                raise fail(where, "a string")
            continue
        if not isinstance(value, dict):
            raise fail(where, "an object")
        for name, required in fields.items():
            if (required or value.get(name) is not None) and not isinstance(value.get(name), str):
                raise fail(f"{where}.{name}", "a string")


def _credentials_for(auth: Credentials, host: str) -> Mapping[str, Any] | None:
    if host in auth:
        return auth[host]
    for pattern, credentials in auth.items():
        if pattern.startswith("*.") and (host.endswith(pattern[1:]) or host == pattern[2:]):
            return credentials
    return None


def http_request(auth: Credentials, url: str) -> tuple[str, dict[str, str]]:
    """The URL to request and the headers to send for ``url`` (http or https), with its host's credentials.

    A conda token goes into the path (``/t/<token>/...``), as anaconda.org expects.
    """
    parts = urlsplit(url)
    credentials = _credentials_for(auth, parts.hostname or "")
    if credentials is None:
        return url, {}
    if "BearerToken" in credentials:
        return url, {"Authorization": f"Bearer {credentials['BearerToken']}"}
    if "BasicHTTP" in credentials:
        basic = credentials["BasicHTTP"]
        token = base64.b64encode(f"{basic['username']}:{basic['password']}".encode()).decode()
        return url, {"Authorization": f"Basic {token}"}
    if "CondaToken" in credentials:
        path = f"/t/{credentials['CondaToken']}{parts.path}"
        return urlunsplit(parts._replace(path=path)), {}
    return url, {}
