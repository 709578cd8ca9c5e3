"""Bucket chores for benches/s3-compare.sh, against a local S3 endpoint
(moto's server) with boto3, which moto installs.

  s3_bench.py ENDPOINT mkbucket BUCKET
  s3_bench.py ENDPOINT upload BUCKET DIR PREFIX   files under DIR -> PREFIX/<relative path>
  s3_bench.py ENDPOINT copy FROM TO               a new bucket TO with a server-side copy
                                                  of every object of FROM
  s3_bench.py ENDPOINT count BUCKET               number of objects in BUCKET
  s3_bench.py requests RECORDING                  moto's record of requests -> counts by
                                                  kind (JSON)

moto lists a bucket in time proportional to all its objects, whatever the
prefix: copies go to buckets of their own, not beside the original.
"""

import base64
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config

WORKERS = 8
KINDS = ["LIST", "GET", "HEAD", "PUT", "COPY", "DELETE", "DeleteObjects", "multipart", "other"]


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=WORKERS * 2),
    )


def keys(s3, bucket, prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def upload(s3, bucket, root, prefix):
    files = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            files.append((path, prefix.rstrip("/") + "/" + os.path.relpath(path, root)))

    def put(item):
        path, key = item
        with open(path, "rb") as f:
            s3.put_object(Bucket=bucket, Key=key, Body=f.read())

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(put, files))
    return len(files)


def copy(s3, src, dst):
    s3.create_bucket(Bucket=dst)

    def one(key):
        s3.copy_object(Bucket=dst, Key=key, CopySource={"Bucket": src, "Key": key})

    todo = list(keys(s3, src, ""))
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, todo))
    return len(todo)


def kind(entry):
    """What one recorded request does (path-style URLs)."""
    parts = urlsplit(entry["url"])
    params = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    first, _, key = parts.path.lstrip("/").partition("/")
    method = entry["method"]
    headers = {k.lower() for k in entry.get("headers", {})}
    if not first or first == "moto-api":
        return "other"
    if "uploads" in params or "uploadId" in params:
        return "multipart"
    if not key:
        if method == "GET" and params & {"list-type", "prefix", "delimiter", "marker"}:
            return "LIST"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
        return "other"
    if method == "PUT":
        return "COPY" if "x-amz-copy-source" in headers else "PUT"
    return {"GET": "GET", "HEAD": "HEAD", "DELETE": "DELETE"}.get(method, "other")


def requests(path):
    counts = {k: 0 for k in KINDS}
    deleted_by_batch = 0
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            k = kind(entry)
            counts[k] += 1
            if k == "DeleteObjects" and entry.get("body"):
                body = entry["body"]
                if entry.get("body_encoded"):
                    body = base64.b64decode(body).decode("utf-8", "replace")
                deleted_by_batch += body.count("<Key>")
    counts["total"] = sum(counts[k] for k in KINDS)
    counts["keys_in_DeleteObjects"] = deleted_by_batch
    return counts


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    if argv[1] == "requests":
        print(json.dumps(requests(argv[2])))
        return
    endpoint, command, args = argv[1], argv[2], argv[3:]
    s3 = client(endpoint)
    if command == "mkbucket":
        s3.create_bucket(Bucket=args[0])
    elif command == "upload":
        print(upload(s3, args[0], args[1], args[2]))
    elif command == "copy":
        print(copy(s3, args[0], args[1]))
    elif command == "count":
        print(sum(1 for _ in keys(s3, args[0], "")))
    else:
        sys.exit(f"unknown command {command}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
