"""Object store: atomic, never overwrites by accident; local folder and S3 (moto server on 127.0.0.1)."""

import pytest

from reviewops.errors import ConfigError, StoreError
from reviewops.store.objects import LocalObjectStore, S3ObjectStore, open_store


def _contract(store):
    assert store.put("raw/cgv/2026-11-20/88381/page-1.json", b"first")
    assert not store.put("raw/cgv/2026-11-20/88381/page-1.json", b"second")  # never overwritten
    assert store.get("raw/cgv/2026-11-20/88381/page-1.json") == b"first"
    assert store.put("reports/latest.json", b"a") and store.put("reports/latest.json", b"b", overwrite=True)
    assert store.get("reports/latest.json") == b"b"
    assert store.exists("reports/latest.json") and not store.exists("reports/none.json")
    assert store.list("raw") == ["raw/cgv/2026-11-20/88381/page-1.json"]
    for bad in ("../escape", "a//b", ""):
        with pytest.raises(StoreError):
            store.put(bad, b"x")
    with pytest.raises(StoreError):
        store.get("missing/key")


def test_local_store(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    _contract(store)
    leftovers = [p for p in (tmp_path / "objects").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_open_store_picks_the_backend(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalObjectStore)
    assert isinstance(open_store(tmp_path.as_uri()), LocalObjectStore)
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_store("ftp://host/x")


def test_s3_store_against_moto(moto_server):
    import boto3

    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="reviewops")
    store = open_store("s3://reviewops/prod", endpoint_url=moto_server)
    assert isinstance(store, S3ObjectStore)
    _contract(store)
    assert store.uri("a/b.json") == "s3://reviewops/prod/a/b.json"


def test_s3_missing_bucket_is_a_clear_error(moto_server):
    store = open_store("s3://no-such-bucket", endpoint_url=moto_server)
    with pytest.raises(StoreError, match="s3://no-such-bucket/k"):
        store.put("k", b"x")
