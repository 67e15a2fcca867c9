"""DuckLakeAssetStore with its data in object storage: moto's S3 API on loopback, with the
catalog in SQLite (and in Postgres). The shared contract, then the start check of
``klaw.storage.objects`` naming what is missing: the httpfs package, credentials, the bucket,
the endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from klaw.errors import ConfigError, StorageError
from klaw.storage import ducklake, location
from klaw.storage.ducklake import DuckLakeAssetStore
from klaw.storage.objects import ObjectStore, check_object_store

from ..s3 import KEY_ID, REGION, SECRET, MotoS3, enforcing_credentials
from .contract import AssetStoreContract, commit, ints


def config(s3: MotoS3, key_id: str = KEY_ID, secret: str = SECRET) -> ObjectStore:
    return ObjectStore.configure(endpoint=s3.endpoint, region=REGION, key_id=key_id, secret=secret)


@pytest.mark.slow  # the whole contract again, over HTTP
class TestDuckLakeOnS3(AssetStoreContract):
    @pytest.fixture
    def store(
        self, tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
    ) -> Iterator[DuckLakeAssetStore]:
        store = DuckLakeAssetStore(
            tmp_path / "lake.sqlite", f"s3://{s3_bucket}/lake", object_store=config(moto_s3)
        )
        yield store
        store.close()

    @pytest.fixture
    def reopen(
        self, tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
    ) -> Callable[[], DuckLakeAssetStore]:
        return lambda: DuckLakeAssetStore(
            tmp_path / "lake.sqlite", f"s3://{s3_bucket}/lake", object_store=config(moto_s3)
        )


def test_the_parquet_files_go_to_the_bucket(
    tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
) -> None:
    data = f"s3://{s3_bucket}/lake"
    with DuckLakeAssetStore(tmp_path / "lake.sqlite", data, object_store=config(moto_s3)) as lake:
        snapshot = commit(lake, "orders", ints(10))
        assert lake.read("orders", snapshot).num_rows == 10
    keys = moto_s3.keys(s3_bucket, "lake/")
    assert keys and all(key.endswith(".parquet") for key in keys), keys
    assert not (tmp_path / "s3:").exists()


@pytest.mark.slow
def test_a_postgres_catalog_with_data_on_s3(
    postgres_catalog: str, moto_s3: MotoS3, s3_bucket: str
) -> None:
    data = f"s3://{s3_bucket}/lake"
    with DuckLakeAssetStore(postgres_catalog, data, object_store=config(moto_s3)) as lake:
        first = commit(lake, "orders", ints(3))
        commit(lake, "orders", ints(5))
    with DuckLakeAssetStore(postgres_catalog, data, object_store=config(moto_s3)) as again:
        assert again.read("orders", first).column("a").to_pylist() == [0, 1, 2]
        assert again.read("orders").num_rows == 5
    assert moto_s3.keys(s3_bucket, "lake/")


# -- the start check ------------------------------------------------------------------------


def test_the_check_passes_and_leaves_only_its_marker(moto_s3: MotoS3, s3_bucket: str) -> None:
    check_object_store(f"s3://{s3_bucket}/lake/", config(moto_s3))
    assert moto_s3.keys(s3_bucket) == ["lake/.klaw-probe"]


def test_a_missing_bucket_is_named(moto_s3: MotoS3) -> None:
    with pytest.raises(ConfigError) as info:
        check_object_store("s3://no-such-bucket/lake", config(moto_s3))
    message = str(info.value)
    assert "bucket 'no-such-bucket' does not exist" in message
    assert "s3://no-such-bucket/lake" in message
    assert "Create the bucket" in message


def test_wrong_credentials_are_access_denied_and_the_secret_never_shows(
    moto_s3: MotoS3, s3_bucket: str
) -> None:
    with enforcing_credentials(moto_s3) as (key_id, secret):
        check_object_store(f"s3://{s3_bucket}/lake", config(moto_s3, key_id, secret))  # fine
        with pytest.raises(ConfigError) as info:
            check_object_store(f"s3://{s3_bucket}/lake", config(moto_s3, "AKIAWRONG", SECRET))
    message = str(info.value)
    assert "access denied" in message
    assert f"s3://{s3_bucket}/lake" in message
    assert SECRET not in message and secret not in message


def test_an_unreachable_endpoint_is_named(s3_bucket: str) -> None:
    wrong = ObjectStore.configure(
        endpoint="http://127.0.0.1:9", region=REGION, key_id=KEY_ID, secret=SECRET
    )
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:9 cannot be reached"):
        check_object_store(f"s3://{s3_bucket}/lake", wrong)


def test_httpfs_not_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_s3: MotoS3
) -> None:
    monkeypatch.setattr(location, "extension_folders", lambda name: [str(tmp_path / "empty")])
    with pytest.raises(ConfigError) as info:
        check_object_store("s3://bucket/lake", config(moto_s3))
    assert "'httpfs'" in str(info.value)
    assert "duckdb-extension-httpfs" in str(info.value)
    assert "pip install 'klaw[s3]'" in str(info.value)


def test_no_credentials_anywhere_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_s3: MotoS3, s3_bucket: str
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws profile
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role either
    chain = ObjectStore.configure(endpoint=moto_s3.endpoint, region=REGION)
    assert chain.chain
    with pytest.raises(ConfigError) as info:
        check_object_store(f"s3://{s3_bucket}/lake", chain)
    assert "No S3 credentials found" in str(info.value)
    assert "KLAW_LAKE__S3__KEY_ID" in str(info.value)


def test_half_a_key_is_refused() -> None:
    with pytest.raises(
        ConfigError, match="KLAW_LAKE__S3__KEY_ID is set but KLAW_LAKE__S3__SECRET is not"
    ):
        ObjectStore.configure(key_id="abc")


def test_the_secret_is_kept_out_of_repr_and_errors(moto_s3: MotoS3) -> None:
    settings = config(moto_s3)
    assert SECRET not in repr(settings)
    assert settings.redact(f"failed: SECRET '{SECRET}'") == "failed: SECRET '***'"
    assert settings.endpoint == f"{moto_s3.host}:{moto_s3.port}"
    assert settings.use_ssl is False and settings.url_style == "path"


def test_a_store_error_that_quotes_the_secret_hides_it(moto_s3: MotoS3) -> None:
    config(moto_s3).secret_sql()  # what every store opening on S3 does
    error = ducklake._storage_error(duckdb.IOException(f"boom: {SECRET}"), "could not commit")
    assert SECRET not in str(error) and "***" in str(error)


def test_a_store_on_a_missing_bucket_fails_with_a_storage_error(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    store = DuckLakeAssetStore(
        tmp_path / "lake.sqlite", "s3://no-such-bucket/lake", object_store=config(moto_s3)
    )
    with store, pytest.raises(StorageError):
        commit(store, "orders", ints(1))
