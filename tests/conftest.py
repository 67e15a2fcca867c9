"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .s3 import MotoS3, moto_server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 API on 127.0.0.1, for the whole session (each test makes its own bucket)."""
    with moto_server() as s3:
        yield s3


@pytest.fixture
def s3_bucket(moto_s3: MotoS3) -> str:
    """A new, empty bucket on the moto server."""
    return moto_s3.new_bucket()
