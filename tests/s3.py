"""A real S3 API on loopback for the tests: moto's server mode, on a free port of 127.0.0.1.

One server serves the whole test session; every test gets a bucket of its own. moto accepts
any credentials unless :func:`enforcing_credentials` makes it check them (IAM users and their
access keys, made through moto's own IAM API)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KEY_ID = "klawtestkey"
SECRET = "klaw-test-secret-value"  # the tests check it never shows in output
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    """A running moto server: where it listens and the credentials the tests use."""

    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, key_id: str = KEY_ID, secret: str = SECRET) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"klaw-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in ``bucket``."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def env(self, **extra: str) -> dict[str, str]:
        """The ``KLAW_LAKE__S3__*`` settings of a ``klaw`` process using this server (no
        AWS_* ones)."""
        return {
            "KLAW_LAKE__S3__ENDPOINT": self.endpoint,
            "KLAW_LAKE__S3__KEY_ID": KEY_ID,
            "KLAW_LAKE__S3__SECRET": SECRET,
            "KLAW_LAKE__S3__REGION": REGION,
            **extra,
        }


@contextlib.contextmanager
def moto_server() -> Iterator[MotoS3]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(host, port)
    finally:
        server.stop()


@contextlib.contextmanager
def enforcing_credentials(s3: MotoS3) -> Iterator[tuple[str, str]]:
    """While inside: moto checks credentials; yields the only access key (id, secret) it takes.

    moto's switch is process-wide (its ``reset-auth`` API): the few requests that make the
    user and its key are let through unchecked, and checking ends on the way out."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=s3.endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )
    _reset_auth(s3, "3")  # the next three requests go unchecked
    name = f"klaw-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        _reset_auth(s3, "inf")


def _reset_auth(s3: MotoS3, count: str) -> None:
    request = urllib.request.Request(
        f"{s3.endpoint}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
