"""S3-compatible object storage for releases shared by several hosts: `prod_deployment_path: s3://bucket/prefix`.

    put_file("s3://bucket/prefix/releases/0003/trainedmodel.pkl", local_path)
    data = get_bytes("s3://bucket/prefix/current")     # None when there is no such object
    names = list_names("s3://bucket/prefix/releases/")  # keys below the prefix, relative to it

The endpoint and credentials come from the environment, as boto3 reads them (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, or a profile). boto3 is imported only when an s3://
location is configured, so a single-machine tick never loads it. Every failure is an ObjectStoreError (an OSError,
so the callers' file-error handling covers it) whose message is one line naming the object and why.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any

SCHEME = "s3://"
CONNECT_TIMEOUT = 3.0  # seconds: an unreachable store fails a step or a poll quickly instead of hanging it
READ_TIMEOUT = 30.0


class ObjectStoreError(OSError):
    """An object that could not be read or written; the message is one line naming it."""


def is_remote(location: str | Path) -> bool:
    """True for an s3:// location."""
    return str(location).startswith(SCHEME)


def split(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URL; ObjectStoreError without a bucket."""
    bucket, _, key = url[len(SCHEME):].partition("/")
    if not bucket:
        raise ObjectStoreError(f"{url}: expected s3://bucket/prefix")
    return bucket, key


def join(url: str, *parts: str) -> str:
    """url/part/part, with exactly one slash between."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


@functools.cache
def _client() -> Any:
    """One S3 client per process, with short timeouts and few retries."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                                            retries={"max_attempts": 2, "mode": "standard"}))


def _fail(url: str, what: str, e: Exception) -> ObjectStoreError:
    """The one-line error for a failed call."""
    reason = getattr(e, "response", {}).get("Error", {}).get("Message") or str(e).splitlines()[0]
    return ObjectStoreError(f"{url}: cannot {what} ({type(e).__name__}: {reason})")


def get_bytes(url: str) -> bytes | None:
    """An object's content, or None when it does not exist."""
    bucket, key = split(url)
    try:
        return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:  # botocore raises many unrelated classes (network, credentials, HTTP status)
        if getattr(e, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise _fail(url, "read", e) from None


def put_bytes(url: str, data: bytes) -> None:
    """Write an object whole (S3 makes a PUT visible all at once, never half-written)."""
    bucket, key = split(url)
    try:
        _client().put_object(Bucket=bucket, Key=key, Body=data)
    except Exception as e:  # see get_bytes
        raise _fail(url, "write", e) from None


def put_file(url: str, path: Path) -> None:
    """Upload a local file as one object."""
    put_bytes(url, path.read_bytes())


def get_file(url: str, path: Path) -> bool:
    """Download an object into a local file; False when it does not exist."""
    data = get_bytes(url)
    if data is None:
        return False
    path.write_bytes(data)
    return True


def list_objects(url: str) -> dict[str, tuple[int, float]]:
    """Every object under a prefix: its key relative to the prefix -> (size, last modified as a Unix time)."""
    bucket, prefix = split(url)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found: dict[str, tuple[int, float]] = {}
    try:
        for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                found[o["Key"][len(prefix):]] = (o["Size"], o["LastModified"].timestamp())
    except Exception as e:  # see get_bytes
        raise _fail(url, "list", e) from None
    return found


def list_names(url: str) -> list[str]:
    """Every key under a prefix, relative to it, sorted."""
    return sorted(list_objects(url))


def mirror(url: str, folder: Path, suffix: str) -> None:
    """Make folder hold a copy of each object directly under url whose name ends with suffix: a new or changed
    object (size or last-modified unlike the copy's) is downloaded whole and renamed into place with the object's
    time as its mtime, so the landing rules count from its upload; a copy whose object is gone is removed."""
    objects = {k: v for k, v in list_objects(url).items()
               if "/" not in k and not k.startswith(".") and k.lower().endswith(suffix)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, (size, modified) in objects.items():
        local = folder / name
        mtime_ns = int(modified * 1e9)
        with contextlib.suppress(OSError):
            st = local.stat()
            if st.st_size == size and st.st_mtime_ns == mtime_ns:
                continue
        tmp = folder / f".{name}.part"
        if get_file(join(url, name), tmp):
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
            os.replace(tmp, local)
    for local in folder.iterdir():
        if local.name.lower().endswith(suffix) and not local.name.startswith(".") and local.name not in objects:
            local.unlink(missing_ok=True)


def delete(url: str) -> None:
    """Delete one object (no error when it is already gone)."""
    bucket, key = split(url)
    try:
        _client().delete_object(Bucket=bucket, Key=key)
    except Exception as e:  # see get_bytes
        raise _fail(url, "delete", e) from None


def delete_prefix(url: str) -> None:
    """Delete every object under a prefix."""
    for name in list_names(url):
        delete(join(url, name))
