"""S3 channels: URL mapping from s3-options and Signature V4 checked against botocore, end to end."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import Channel, HttpServer
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main
from pixi_pack.pack import s3


def _botocore_authorization(url: str, region: str, creds: Credentials, amz_date: str) -> str:
    # botocore's add_auth() stamps the current time, so drive its steps at the date under test.
    request = AWSRequest(method="GET", url=url)
    signer = S3SigV4Auth(creds, "s3", region)
    request.context["timestamp"] = amz_date
    request.headers["X-Amz-Date"] = amz_date
    request.headers["X-Amz-Content-SHA256"] = s3.EMPTY_PAYLOAD_SHA256
    if creds.token:
        request.headers["X-Amz-Security-Token"] = creds.token
    canonical = signer.canonical_request(request)
    to_sign = signer.string_to_sign(request, canonical)
    signature = signer.signature(to_sign, request)
    headers = signer.signed_headers(signer.headers_to_sign(request))
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    return f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={headers}, Signature={signature}"


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket.s3.eu-central-1.amazonaws.com/linux-64/foo%2Bbar-1.0-0.conda",
        "http://127.0.0.1:9000/bucket/noarch/a%20b-1.0-0.conda",
        "https://x.example/b/k?versionId=3&a=b",
    ],
)
@pytest.mark.parametrize("token", [None, "SESSION"])
def test_signature_matches_botocore(url: str, token: str | None) -> None:
    now = datetime.datetime(2025, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
    ours = s3.sign_get(url, "eu-central-1", s3.S3Credentials("AKID", "SECRET", token), now)
    expected = _botocore_authorization(
        url, "eu-central-1", Credentials("AKID", "SECRET", token), "20250304T050607Z"
    )
    assert ours["Authorization"] == expected


def test_locate_virtual_host_path_style_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    options = {
        "vh": {
            "endpoint-url": "https://s3.eu-central-1.amazonaws.com",
            "region": "eu-central-1",
            "force-path-style": False,
        },
        "ps": {"endpoint-url": "http://minio.local:9000/", "region": "us-west-2", "force-path-style": True},
    }
    assert s3.locate("s3://vh/ch/linux-64/x.conda", options) == s3.S3Location(
        "https://vh.s3.eu-central-1.amazonaws.com/ch/linux-64/x.conda", "eu-central-1"
    )
    assert s3.locate("s3://ps/ch/x.conda", options).url == "http://minio.local:9000/ps/ch/x.conda"
    assert s3.locate("s3://other/x.conda", options) == s3.S3Location(
        "https://other.s3.us-east-1.amazonaws.com/x.conda", "us-east-1"
    )


def test_pack_from_an_s3_channel(
    tmp_path: Path, http_server: HttpServer, channel: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from builders import write_channel

    write_channel(http_server.root / "my-bucket" / "channel", list(channel.packages.values()))
    project = tmp_path / "project"
    packages = list(channel.packages.values())
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, "s3://my-bucket/channel") for p in packages]}},
        ["s3://my-bucket/channel"],
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[s3-options.my-bucket]\nendpoint-url = "{http_server.url}"\nregion = "eu-west-1"\nforce-path-style = true\n'
    )
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps({"s3://my-bucket": {"S3Credentials": {"access_key_id": "AK", "secret_access_key": "SK"}}})
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    out = tmp_path / "env.tar"
    assert (
        pack_main(
            [str(project), "-p", "linux-64", "-o", str(out), "-c", str(config), "--auth-file", str(auth)]
        )
        == 0
    )
    assert sorted(http_server.requests) == sorted(
        f"/my-bucket/channel/{p.subdir}/{p.file_name}" for p in packages
    )
    for path, headers in zip(http_server.requests, http_server.headers):
        expected = _botocore_authorization(
            f"{http_server.url}{path}", "eu-west-1", Credentials("AK", "SK"), headers["x-amz-date"]
        )
        assert headers["Authorization"] == expected
