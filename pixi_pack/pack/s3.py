"""``s3://bucket/key`` URLs: where to send the request and how to sign it (AWS Signature Version 4).

Pure functions, so the signature can be checked against a reference implementation with a fixed clock.
Settings follow pixi's ``[s3-options.<bucket>]`` (endpoint-url, region, force-path-style); credentials
come from the authentication file (``S3Credentials``) or the usual AWS environment variables.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pixi_pack.errors import DownloadError

#: A GET has an empty body; signing its hash works with every S3 implementation.
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class S3Location:
    """Where an object is served over https, and the region that signs for it."""

    url: str
    region: str


def locate(s3_url: str, options: Mapping[str, Mapping[str, Any]]) -> S3Location:
    """Map ``s3://bucket/key`` to an https URL using the bucket's s3-options (or AWS defaults)."""
    parts = urlsplit(s3_url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket:
        msg = f"invalid S3 URL {s3_url}: no bucket"
        raise DownloadError(msg)
    bucket_options = options.get(bucket, {})
    region = str(
        bucket_options.get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    endpoint = str(bucket_options.get("endpoint-url") or f"https://s3.{region}.amazonaws.com").rstrip("/")
    path_style = bool(bucket_options.get("force-path-style", False))
    ep = urlsplit(endpoint)
    base_path = ep.path.rstrip("/")
    if path_style:
        url = f"{ep.scheme}://{ep.netloc}{base_path}/{bucket}/{key}"
    else:
        url = f"{ep.scheme}://{bucket}.{ep.netloc}{base_path}/{key}"
    return S3Location(url, region)


def credentials_from(auth: Mapping[str, Any] | None) -> S3Credentials | None:
    """Credentials from an auth-file entry, else from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; None if neither."""
    if auth and "S3Credentials" in auth:
        c = auth["S3Credentials"]
        return S3Credentials(str(c["access_key_id"]), str(c["secret_access_key"]), c.get("session_token"))
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return S3Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN"))
    return None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign_get(url: str, region: str, credentials: S3Credentials, now: datetime.datetime) -> dict[str, str]:
    """The headers that authorise ``GET url`` for S3 with Signature Version 4 at time ``now`` (UTC)."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_PAYLOAD_SHA256, "x-amz-date": amz_date}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    signed = ";".join(sorted(headers))
    query = "&".join(
        sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
        )
    )
    canonical = "\n".join(
        [
            "GET",
            quote(unquote(parts.path) or "/", safe="/-_.~"),
            query,
            "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)),
            signed,
            EMPTY_PAYLOAD_SHA256,
        ]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{credentials.secret_access_key}".encode(), date), region), "s3"),
        "aws4_request",
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    result = {k: v for k, v in headers.items() if k != "host"}
    result["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return result
