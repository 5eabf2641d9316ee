"""Ingestion sources: local folders confined to the allowed roots, and gs:// buckets on a
real Cloud Storage emulator (fake-gcs-server), listed as streams and read with a size cap."""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from google.cloud import storage  # type: ignore[attr-defined]  # untyped package

from functions.config import IngestionSettings, Settings
from functions.errors import FanoutError, InvalidArgument, ItemFailed, TransientError
from functions.ingestion.documents import SourceItem
from functions.ingestion.sources import open_source, read_item, source_for_item
from functions.ingestion.sources.gcs import GcsSource
from functions.ingestion.sources.gs_uri import parse_gs_uri
from functions.local.emulators import free_port
from tests.support.gcs import MakeBucket

MiB = 1024 * 1024


def settings_for(roots: tuple[Path, ...] = (), buckets: tuple[str, ...] = ()) -> Settings:
    return replace(
        Settings(),
        allowed_roots=roots,
        ingestion=replace(IngestionSettings(), allowed_buckets=buckets),
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The one allowed root; `tmp_path / "outside"` is a sibling outside it."""
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


# --- local folders ---------------------------------------------------------------------


def test_local_lists_nested_files_in_path_order_with_sizes_and_types(root: Path) -> None:
    """Each directory's entries sorted by name, depth first (the order of sorted Paths, so
    "a/x" comes before "a-b/x"); absolute paths, sizes, MIME types or ""."""
    docs = root / "docs"
    write(docs / "b.txt", b"bbb")
    write(docs / "a.md", b"# a")
    write(docs / "README", b"readme!")
    write(docs / "a" / "x.json", b"{}")
    write(docs / "a-b" / "x.html", b"<p>hi</p>")
    write(docs / "a" / "deeper" / "y.pdf", b"%PDF-1.7")

    items = list(open_source(str(docs), settings_for((root,))).list_items())

    assert items == [
        SourceItem(str(docs / "README"), 7, ""),
        SourceItem(str(docs / "a" / "deeper" / "y.pdf"), 8, "application/pdf"),
        SourceItem(str(docs / "a" / "x.json"), 2, "application/json"),
        SourceItem(str(docs / "a-b" / "x.html"), 9, "text/html"),
        SourceItem(str(docs / "a.md"), 3, "text/markdown"),
        SourceItem(str(docs / "b.txt"), 3, "text/plain"),
    ]


def test_local_skips_dot_files_and_dot_directories(root: Path) -> None:
    write(root / "keep.txt", b"k")
    write(root / ".env", b"SECRET=1")
    write(root / ".git" / "config", b"[core]")
    write(root / "sub" / ".DS_Store", b"junk")
    write(root / "sub" / "keep.txt", b"k")

    uris = [item.uri for item in open_source(str(root), settings_for((root,))).list_items()]

    assert uris == [str(root / "keep.txt"), str(root / "sub" / "keep.txt")]


def test_local_single_file_location_lists_that_file(root: Path) -> None:
    path = write(root / "one.txt", b"12345")
    items = list(open_source(str(path), settings_for((root,))).list_items())
    assert items == [SourceItem(str(path), 5, "text/plain")]


def test_local_relative_location_resolves_against_the_working_directory(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative locations and roots mean what they mean to the process (as `samples` does);
    items are still absolute paths."""
    write(root / "docs" / "a.txt", b"a")
    monkeypatch.chdir(root.parent)
    source = open_source("root/docs", settings_for((Path("root"),)))
    assert [item.uri for item in source.list_items()] == [str(root / "docs" / "a.txt")]


def test_local_refuses_a_dotdot_escape_at_submit(root: Path) -> None:
    write(root.parent / "outside" / "secret.txt", b"s")
    with pytest.raises(InvalidArgument, match="outside the allowed roots"):
        open_source(f"{root}/../outside", settings_for((root,)))


def test_local_refuses_an_absolute_path_outside_the_roots_at_submit(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="outside the allowed roots"):
        open_source(str(root.parent / "outside"), settings_for((root,)))
    with pytest.raises(InvalidArgument, match=r"\(none configured\)"):
        open_source(str(root), settings_for(()))


def test_local_refuses_a_missing_location_at_submit(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        open_source(str(root / "nope"), settings_for((root,)))


def test_local_refuses_a_location_that_is_a_symlink_out_of_the_roots(root: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    with pytest.raises(InvalidArgument, match="outside the allowed roots"):
        open_source(str(root / "escape"), settings_for((root,)))


def test_local_symlink_pointing_outside_is_neither_listed_nor_openable(root: Path) -> None:
    """A link in the tree to a file (or directory) outside the roots is not listed; opening
    it by name fails that item, and naming it as an item is refused at submit."""
    secret = write(root.parent / "outside" / "secret.txt", b"secret")
    write(root / "ok.txt", b"ok")
    (root / "link.txt").symlink_to(secret)
    (root / "linkdir").symlink_to(root.parent / "outside")
    source = open_source(str(root), settings_for((root,)))

    assert [item.uri for item in source.list_items()] == [str(root / "ok.txt")]
    with pytest.raises(ItemFailed, match="outside the allowed roots"):
        read_item(source, str(root / "link.txt"), max_bytes=MiB)
    with pytest.raises(InvalidArgument, match="outside the allowed roots"):
        source_for_item(str(root / "link.txt"), settings_for((root,)))


def test_local_symlink_to_a_file_inside_the_roots_is_listed_under_its_own_name(
    root: Path,
) -> None:
    """Symlinked directories are never descended into (no cycles, no file listed twice)."""
    target = write(root / "data" / "real.txt", b"real")
    (root / "alias.txt").symlink_to(target)
    (root / "loop").symlink_to(root)

    source = open_source(str(root), settings_for((root,)))

    assert list(source.list_items()) == [
        SourceItem(str(root / "alias.txt"), 4, "text/plain"),
        SourceItem(str(target), 4, "text/plain"),
    ]
    assert read_item(source, str(root / "alias.txt"), max_bytes=MiB) == b"real"


def test_local_listing_is_a_lazy_stream(root: Path) -> None:
    """Nothing is read from disk until the iterator is consumed, so files added before then
    are seen: the listing is walked as it is consumed, not built up front."""
    source = open_source(str(root), settings_for((root,)))
    items = source.list_items()
    write(root / "late.txt", b"late")
    assert [item.uri for item in items] == [str(root / "late.txt")]


def test_read_item_reads_a_local_file_whole_up_to_the_limit(root: Path) -> None:
    path = write(root / "exact.bin", bytes(range(256)) * 4)
    source = open_source(str(root), settings_for((root,)))
    assert read_item(source, str(path), max_bytes=1024) == bytes(range(256)) * 4


def test_read_item_fails_a_file_deleted_after_listing(root: Path) -> None:
    write(root / "gone.txt", b"soon gone")
    source = open_source(str(root), settings_for((root,)))
    [item] = source.list_items()
    (root / "gone.txt").unlink()
    with pytest.raises(ItemFailed, match=r"^no longer exists$"):
        read_item(source, item.uri, max_bytes=MiB)


def test_read_item_fails_an_oversize_local_file_naming_its_size(root: Path) -> None:
    path = write(root / "big.txt", b"x" * 2048)
    source = open_source(str(root), settings_for((root,)))
    with pytest.raises(ItemFailed, match=r"^2048 bytes, over the 1024 byte limit$"):
        read_item(source, str(path), max_bytes=1024)


class _CountingFile(io.FileIO):
    """A file that counts the bytes actually read from it, whatever the read path."""

    def __init__(self, path: str, counter: list[int]) -> None:
        super().__init__(path, "r")
        self._counter = counter

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self._counter.append(len(data))
        return data

    def readall(self) -> bytes:
        data = super().readall()
        self._counter.append(len(data))
        return data

    def readinto(self, buffer: Any, /) -> int:
        count = super().readinto(buffer)
        self._counter.append(count)
        return count


class _SpyingSource:
    """A Source over local files that records every read of their bytes."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.root_uri = location
        self.reads: list[int] = []

    def list_items(self) -> Iterator[SourceItem]:
        return iter(())

    def list_after(self, uri: str | None) -> Iterator[SourceItem]:
        return iter(())

    def open(self, uri: str) -> BinaryIO:
        return io.BufferedReader(_CountingFile(uri, self.reads))


def test_read_item_refuses_an_oversize_item_before_reading_any_byte(root: Path) -> None:
    path = write(root / "big.bin", b"x" * (3 * MiB))
    source = _SpyingSource(str(root))
    with pytest.raises(ItemFailed, match=r"^3145728 bytes, over the 1048576 byte limit$"):
        read_item(source, str(path), max_bytes=MiB)
    assert source.reads == []


def test_read_item_cuts_off_a_stream_of_unknown_size_past_the_limit() -> None:
    """A source whose streams cannot seek is read up to the limit plus one byte, no more."""

    class Unseekable(io.BytesIO):
        def seekable(self) -> bool:
            return False

    class Endless:
        location = root_uri = "endless"

        def list_items(self) -> Iterator[SourceItem]:
            return iter(())

        def list_after(self, uri: str | None) -> Iterator[SourceItem]:
            return iter(())

        def open(self, uri: str) -> BinaryIO:
            return Unseekable(b"y" * 5000)

    with pytest.raises(ItemFailed, match=r"^over the 100 byte limit$"):
        read_item(Endless(), "endless", max_bytes=100)
    assert read_item(Endless(), "endless", max_bytes=5000) == b"y" * 5000


def test_read_item_fails_a_named_item_that_is_not_a_regular_file(root: Path) -> None:
    """A FIFO named as an item fails at once instead of blocking the batch; a directory
    fails too."""
    fifo = root / "pipe"
    os.mkfifo(fifo)
    source = source_for_item(str(fifo), settings_for((root,)))
    with pytest.raises(ItemFailed, match=r"^not a regular file$"):
        read_item(source, str(fifo), max_bytes=MiB)
    with pytest.raises(ItemFailed, match=r"^not a regular file$"):
        read_item(source, str(root), max_bytes=MiB)


def test_source_for_a_local_item_checks_the_roots_but_not_existence(root: Path) -> None:
    """A missing item is not a bad request: it fails alone when its batch runs."""
    source = source_for_item(str(root / "later.txt"), settings_for((root,)))
    with pytest.raises(ItemFailed, match="no longer exists"):
        read_item(source, str(root / "later.txt"), max_bytes=MiB)
    with pytest.raises(InvalidArgument, match="outside the allowed roots"):
        source_for_item(str(root.parent / "outside" / "x.txt"), settings_for((root,)))


@pytest.mark.parametrize("location", ["s3://bucket/x", "http://example.com/x", "file:///etc"])
def test_other_schemes_are_refused_at_submit(location: str, root: Path) -> None:
    with pytest.raises(InvalidArgument, match="unsupported scheme"):
        open_source(location, settings_for((root,), ("bucket",)))
    with pytest.raises(InvalidArgument, match="unsupported scheme"):
        source_for_item(location, settings_for((root,), ("bucket",)))


def test_an_empty_location_is_refused(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="location is empty"):
        open_source("", settings_for((root,)))


# --- gs:// URIs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("gs://", "bucket name is missing"),
        ("gs:///x", "bucket name is missing"),
        ("gs://UPPER/x", "'UPPER' is not a bucket name"),
        ("gs://a/x", "'a' is not a bucket name"),  # too short
        ("gs://ab/x", "'ab' is not a bucket name"),
        ("gs://" + "b" * 64 + "/x", "is not a bucket name"),  # too long
        ("gs://bucket..x/", "'bucket..x' is not a bucket name"),
        ("gs://-bucket/x", "is not a bucket name"),
        ("gs://bucket_/x", "is not a bucket name"),
        ("gs://buc ket/x", "is not a bucket name"),
        ("gs://bucket:80/x", "is not a bucket name"),
        ("gs://bucket/x\ny", "line breaks"),
        ("gs://bucket/" + "n" * 1025, "over 1024 bytes"),
    ],
)
def test_malformed_gs_uris_are_refused_at_submit(uri: str, reason: str) -> None:
    settings = settings_for(buckets=("bucket", "a", "ab", "UPPER", "bucket..x"))
    with pytest.raises(InvalidArgument, match="is not a valid gs:// URI: .*" + re.escape(reason)):
        open_source(uri, settings)


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("gs://abc", "abc", ""),
        ("gs://my-bucket/", "my-bucket", ""),
        ("gs://my_bucket.v2/docs/2024/", "my_bucket.v2", "docs/2024/"),
        ("gs://" + "b" * 63 + "/a b/ü", "b" * 63, "a b/ü"),
    ],
)
def test_valid_gs_uris_split_into_bucket_and_prefix(uri: str, bucket: str, prefix: str) -> None:
    parsed = parse_gs_uri(uri)
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)


def test_a_bucket_not_on_the_allow_list_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"'other' is not allowed; allowed buckets: a1, b2"):
        open_source("gs://other/x", settings_for(buckets=("a1", "b2")))
    with pytest.raises(InvalidArgument, match="no gs:// buckets are allowed"):
        open_source("gs://other/x", settings_for())
    with pytest.raises(InvalidArgument, match="not allowed"):
        source_for_item("gs://other/x.txt", settings_for(buckets=("a1",)))


def test_a_gs_item_must_name_an_object() -> None:
    settings = settings_for(buckets=("bucket",))
    for uri in ("gs://bucket", "gs://bucket/", "gs://bucket/folder/"):
        with pytest.raises(InvalidArgument, match="names no object"):
            source_for_item(uri, settings)


# --- gs:// on the emulator ---------------------------------------------------------------


def test_gcs_lists_thousands_of_objects_exactly_once_in_order_across_pages(
    make_bucket: MakeBucket,
) -> None:
    """2,500 objects under a prefix, pages of 1,000 (the default): every object once, in
    name order, with its size and type; objects outside the prefix are not listed."""
    objects: dict[str, bytes | tuple[bytes, str]] = {
        f"big/{i:05d}.txt": (b"z" * (i % 97), "text/plain") for i in range(2500)
    }
    objects["bigger/not-me.txt"] = b"no"
    objects["a-first.txt"] = b"no"
    bucket = make_bucket(objects)

    source = open_source(f"gs://{bucket}/big/", settings_for(buckets=(bucket,)))
    items = list(source.list_items())

    assert items == [
        SourceItem(f"gs://{bucket}/big/{i:05d}.txt", i % 97, "text/plain") for i in range(2500)
    ]
    assert isinstance(source, GcsSource)
    assert source.page_size == 1000
    assert source.pages_read >= 3


def test_gcs_listing_fetches_pages_as_it_is_consumed(make_bucket: MakeBucket) -> None:
    bucket = make_bucket({f"p/{i}.txt": b"x" for i in range(5)})
    source = GcsSource(f"gs://{bucket}/p/", settings_for(buckets=(bucket,)), page_size=2)

    items = source.list_items()
    assert source.pages_read == 0
    next(items)
    assert source.pages_read == 1
    assert len(list(items)) == 4
    assert source.pages_read == 3


def test_a_listing_resumes_just_after_any_item_it_listed(
    root: Path, make_bucket: MakeBucket
) -> None:
    """`list_after(uri)` is the rest of the listing after `uri`, wherever `uri` is (a page's
    cursor): across directories in the walk's order, and from Cloud Storage's `start_offset`
    with the cursor's own object and "folder/" placeholders left out. A directory on the
    cursor's path that is gone since is skipped, not an error."""
    for name in ["a/0.txt", "a/deep/x.txt", "a-b.txt", "b/1.txt", "b/2.txt", "c.txt"]:
        write(root / "docs" / name, b"x")
    local = open_source(str(root / "docs"), settings_for((root,)))
    listing = [item.uri for item in local.list_items()]
    assert listing[1:3] == [
        str(root / "docs" / "a" / "deep" / "x.txt"),
        str(root / "docs" / "a-b.txt"),
    ]
    for k, uri in enumerate(listing):
        assert [item.uri for item in local.list_after(uri)] == listing[k + 1 :]
    gone = root / "docs" / "b"
    for child in gone.iterdir():
        child.unlink()
    gone.rmdir()
    assert [item.uri for item in local.list_after(str(gone / "1.txt"))] == [listing[-1]]

    bucket = make_bucket({"d/1": b"x", "d/2/": b"", "d/2/a": b"x", "d/3": b"x", "e/1": b"x"})
    remote = open_source(f"gs://{bucket}/d/", settings_for(buckets=(bucket,)))
    names = [item.uri for item in remote.list_items()]
    assert names == [f"gs://{bucket}/d/{name}" for name in ("1", "2/a", "3")]
    for k, uri in enumerate(names):
        assert [item.uri for item in remote.list_after(uri)] == names[k + 1 :]


def test_gcs_prefix_is_a_plain_string_prefix_as_in_cloud_storage(
    make_bucket: MakeBucket,
) -> None:
    """`gs://b/docs` also matches `docs2/...`; `gs://b/docs/` only what is under `docs/`;
    `gs://b` and `gs://b/` list the whole bucket."""
    bucket = make_bucket({"docs/a.txt": b"a", "docs2/b.txt": b"b", "root.txt": b"r"})
    settings = settings_for(buckets=(bucket,))

    def names(location: str) -> list[str]:
        prefix = f"gs://{bucket}/"
        return [
            item.uri.removeprefix(prefix) for item in open_source(location, settings).list_items()
        ]

    assert names(f"gs://{bucket}/docs/") == ["docs/a.txt"]
    assert names(f"gs://{bucket}/docs") == ["docs/a.txt", "docs2/b.txt"]
    assert names(f"gs://{bucket}") == ["docs/a.txt", "docs2/b.txt", "root.txt"]
    assert names(f"gs://{bucket}/") == ["docs/a.txt", "docs2/b.txt", "root.txt"]
    assert names(f"gs://{bucket}/nothing-here/") == []


def test_gcs_skips_folder_placeholder_objects(make_bucket: MakeBucket) -> None:
    bucket = make_bucket(
        {"f/": b"", "f/sub/": b"", "f/sub/x.json": (b"{}", "application/json"), "f/y": b"y"}
    )
    items = list(open_source(f"gs://{bucket}/f/", settings_for(buckets=(bucket,))).list_items())
    assert items == [
        SourceItem(f"gs://{bucket}/f/sub/x.json", 2, "application/json"),
        SourceItem(f"gs://{bucket}/f/y", 1, "application/octet-stream"),
    ]


def test_gcs_read_item_returns_each_objects_bytes(make_bucket: MakeBucket) -> None:
    """Small, empty, and larger than the reader's 1 MiB buffer (read in two ranges)."""
    large = bytes(range(256)) * (6 * 1024 + 7)  # ~1.5 MiB, not a multiple of the buffer
    bucket = make_bucket({"s.txt": b"hello", "empty.txt": b"", "large.bin": large})
    source = open_source(f"gs://{bucket}", settings_for(buckets=(bucket,)))

    got = {item.uri: read_item(source, item.uri, max_bytes=2 * MiB) for item in source.list_items()}

    assert got == {
        f"gs://{bucket}/empty.txt": b"",
        f"gs://{bucket}/large.bin": large,
        f"gs://{bucket}/s.txt": b"hello",
    }


def test_gcs_object_stream_seeks_and_reads_ranges(make_bucket: MakeBucket) -> None:
    bucket = make_bucket({"r.txt": b"0123456789"})
    source = open_source(f"gs://{bucket}", settings_for(buckets=(bucket,)))
    with source.open(f"gs://{bucket}/r.txt") as stream:
        assert stream.seek(0, io.SEEK_END) == 10
        stream.seek(3)
        assert stream.read(4) == b"3456"
        assert stream.read() == b"789"
        assert stream.read(5) == b""


def test_gcs_read_item_fails_an_object_deleted_after_listing(
    make_bucket: MakeBucket, gcs_client: Any
) -> None:
    bucket = make_bucket({"gone.txt": b"soon gone"})
    source = open_source(f"gs://{bucket}", settings_for(buckets=(bucket,)))
    [item] = source.list_items()
    gcs_client.bucket(bucket).blob("gone.txt").delete()
    with pytest.raises(ItemFailed, match=r"^no longer exists$"):
        read_item(source, item.uri, max_bytes=MiB)


def test_gcs_read_item_fails_an_oversize_object_naming_its_size(make_bucket: MakeBucket) -> None:
    bucket = make_bucket({"big.bin": b"x" * 5000})
    source = open_source(f"gs://{bucket}", settings_for(buckets=(bucket,)))
    with pytest.raises(ItemFailed, match=r"^5000 bytes, over the 4096 byte limit$"):
        read_item(source, f"gs://{bucket}/big.bin", max_bytes=4096)


def test_gcs_source_for_item_opens_that_object_and_only_its_bucket(
    make_bucket: MakeBucket,
) -> None:
    bucket = make_bucket({"dir/doc.md": b"# doc"})
    other = make_bucket({"x.txt": b"x"})
    settings = settings_for(buckets=(bucket, other))
    source = source_for_item(f"gs://{bucket}/dir/doc.md", settings)

    assert read_item(source, f"gs://{bucket}/dir/doc.md", max_bytes=MiB) == b"# doc"
    with pytest.raises(ItemFailed, match=f"is not an object of gs://{bucket}"):
        read_item(source, f"gs://{other}/x.txt", max_bytes=MiB)


def test_gcs_listing_a_bucket_that_does_not_exist_is_refused(fake_gcs: str) -> None:
    source = open_source(
        "gs://no-such-bucket-here/x", settings_for(buckets=("no-such-bucket-here",))
    )
    with pytest.raises(InvalidArgument, match="bucket 'no-such-bucket-here' does not exist"):
        list(source.list_items())


# --- gs:// failures: transient ones retry the batch, others fail the item -------------


class _StubGcs(ThreadingHTTPServer):
    """Answers Cloud Storage's JSON API with a chosen status per kind of call: listing,
    object metadata, media download. A 200 serves one 5-byte object "a.txt"."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.status = {"list": 200, "metadata": 200, "media": 200}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StubHandler(BaseHTTPRequestHandler):
    server: _StubGcs

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/download/"):
            kind, body = "media", b"hello"
        elif path.endswith("/o"):
            kind, body = "list", json.dumps({"items": [{"name": "a.txt", "size": "5"}]}).encode()
        else:
            meta = {"name": "a.txt", "bucket": "stub-bucket", "size": "5", "generation": "1"}
            kind, body = "metadata", json.dumps(meta).encode()
        status = self.server.status[kind]
        if status != 200:
            body = json.dumps({"error": {"code": status, "message": f"stub {status}"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def stub_gcs() -> Iterator[_StubGcs]:
    server = _StubGcs()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def stub_source(url: str, location: str = "gs://stub-bucket/") -> GcsSource:
    """A source on `url`, with the client's retries off so each failure shows at once."""
    client = storage.Client(
        project="stub",
        client_options={"api_endpoint": url},
        use_auth_w_custom_endpoint=False,  # anonymous, as on the emulator
    )
    return GcsSource(location, settings_for(buckets=("stub-bucket",)), client=client, retry=None)


def test_stub_serves_a_readable_object(stub_gcs: _StubGcs) -> None:
    """The stub itself works, so the failures below are the statuses it was told to send."""
    source = stub_source(stub_gcs.url)
    assert [item.uri for item in source.list_items()] == ["gs://stub-bucket/a.txt"]
    assert read_item(source, "gs://stub-bucket/a.txt", max_bytes=10) == b"hello"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_gcs_overload_and_server_errors_are_transient(stub_gcs: _StubGcs, status: int) -> None:
    stub_gcs.status = {"list": status, "metadata": status, "media": status}
    source = stub_source(stub_gcs.url)
    with pytest.raises(TransientError, match="retry later"):
        list(source.list_items())
    with pytest.raises(TransientError, match="retry later"):
        read_item(source, "gs://stub-bucket/a.txt", max_bytes=10)


def test_gcs_server_error_while_downloading_is_transient(stub_gcs: _StubGcs) -> None:
    stub_gcs.status["media"] = 503
    with pytest.raises(TransientError, match=r"reading gs://stub-bucket/a\.txt failed"):
        read_item(stub_source(stub_gcs.url), "gs://stub-bucket/a.txt", max_bytes=10)


def test_gcs_unreachable_endpoint_is_transient() -> None:
    source = stub_source(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(TransientError):
        list(source.list_items())
    with pytest.raises(TransientError):
        read_item(source, "gs://stub-bucket/a.txt", max_bytes=10)


def test_gcs_permission_denied_fails_the_item_not_the_batch(stub_gcs: _StubGcs) -> None:
    stub_gcs.status = {"list": 403, "metadata": 403, "media": 403}
    source = stub_source(stub_gcs.url)
    with pytest.raises(ItemFailed, match=r"^could not be read: 403"):
        read_item(source, "gs://stub-bucket/a.txt", max_bytes=10)
    with pytest.raises(FanoutError, match="listing gs://stub-bucket/ failed: 403") as info:
        list(source.list_items())
    assert not isinstance(info.value, TransientError | InvalidArgument)


def test_gcs_object_replaced_while_being_read_fails_the_item(stub_gcs: _StubGcs) -> None:
    """Reads pin the generation seen when the item was opened; Cloud Storage answers 412
    once it is replaced (fake-gcs-server ignores the condition, hence the stub)."""
    stub_gcs.status["media"] = 412
    with pytest.raises(ItemFailed, match=r"^changed while it was being read$"):
        read_item(stub_source(stub_gcs.url), "gs://stub-bucket/a.txt", max_bytes=10)
