"""The batch upload parser against real files built in memory: zips, PDFs, HTML, JSONL."""

from __future__ import annotations

import copy
import io
import json
import stat
import zipfile
from collections.abc import Iterable
from typing import IO, Literal

import pytest

from gateway.errors import status_for
from gateway.uploads import (
    Document,
    UploadError,
    UploadFile,
    UploadTooLargeError,
    html_to_text,
    parse_upload,
)
from schema.settings import BatchUploadSettings

LIMITS = BatchUploadSettings()


def parse(*files: UploadFile, limits: BatchUploadSettings = LIMITS) -> list[Document]:
    return parse_upload(list(files), limits)


def make_zip(members: Iterable[tuple[str | zipfile.ZipInfo, bytes]], level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def make_pdf(*page_texts: str) -> bytes:
    """A minimal valid PDF written by hand: one Helvetica text object per page, exact xref offsets."""
    page_ids = [4 + 2 * i for i in range(len(page_texts))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids)
        + b"] /Count %d >>" % len(page_ids),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }  # fmt: skip
    for page_id, text in zip(page_ids, page_texts, strict=True):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        stream = b"BT /F1 12 Tf 72 720 Td (" + escaped + b") Tj ET"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    count = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for number in range(1, count):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref)
    return bytes(out)


def refused(
    *files: UploadFile, limits: BatchUploadSettings = LIMITS, error: type[UploadError] = UploadError
) -> UploadError:
    with pytest.raises(error) as caught:
        parse(*files, limits=limits)
    if error is UploadError:
        assert type(caught.value) is UploadError, "expected a 422, not a 413"
    return caught.value


# --- what is accepted --------------------------------------------------------------------------------


def test_zip_of_1000_documents_keeps_archive_order() -> None:
    names = [f"docs/{i:04d}-{'zyx'[i % 3]}.txt" for i in range(1_000)]
    names.reverse()  # archive order, not sorted order, is what counts
    archive = make_zip((name, f"document number {name}\n".encode()) for name in names)
    documents = parse(UploadFile("many.zip", archive))
    assert [d.custom_id for d in documents] == names
    assert documents[0].text == f"document number {names[0]}"
    assert all(d.params == {} for d in documents)


@pytest.mark.parametrize("name", ["a.txt", "b.md", "c.rst", "UPPER.TXT"])
def test_text_files(name: str) -> None:
    [document] = parse(UploadFile(name, "  Héllo\r\nwörld  \n".encode()))
    assert document == Document(custom_id=name, text="Héllo\nwörld", params={})


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfbom text",
        "bom text".encode("utf-16"),  # with BOM, native order
        b"\xfe\xff" + "bom text".encode("utf-16-be"),
        "bom text".encode("utf-32"),
    ],
)
def test_byte_order_marks(content: bytes) -> None:
    [document] = parse(UploadFile("bom.txt", content))
    assert document.text == "bom text"


def test_html_is_reduced_to_its_text() -> None:
    page = b"""<!doctype html><html><head><title>Not this</title>
    <style>p { color: red }</style><script>var x = "<p>nor this</p>";</script></head>
    <body><h1>Title &amp; more</h1><p>First
       paragraph with&nbsp;an &lt;entity&gt;.</p><div>Second<br>line two</div>
    <noscript>fallback</noscript><ul><li>one</li><li>two</li></ul>
    <pre>keep
  spacing</pre><p>&amp;lt; stays literal</p></body></html>"""
    [document] = parse(UploadFile("page.html", page))
    assert document.text == (
        "Title & more\n\nFirst paragraph with an <entity>.\n\nSecond\nline two\n\none\n\ntwo"
        "\n\nkeep\nspacing\n\n&lt; stays literal"
    )


def test_html_without_closing_head_and_declared_charset() -> None:
    page = '<html><head><meta charset="windows-1252"><title>t</title><p>Caf\xe9 ok</p>'.encode("cp1252")
    assert html_to_text("<head><title>t</title><body>body text") == "body text"
    [document] = parse(UploadFile("page.htm", page))
    assert document.text == "Café ok"


def test_pdf_text_is_extracted() -> None:
    pdf = make_pdf("Hello from page one", "And page (two)")
    [document] = parse(UploadFile("report.pdf", pdf))
    assert document.custom_id == "report.pdf"
    assert "Hello from page one" in document.text
    assert "And page (two)" in document.text
    assert document.text.index("one") < document.text.index("two")


def test_jsonl_with_params_and_blank_lines() -> None:
    lines = [
        {"custom_id": "a", "text": "first text", "params": {"max_words": 20}},
        {"custom_id": "b", "text": "second\u2028text"},  # a raw U+2028 is legal inside JSON strings
    ]
    body = "\n\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\r\n  \n"
    documents = parse(UploadFile("batch.jsonl", body.encode()))
    assert documents == [
        Document("a", "first text", {"max_words": 20}),
        Document("b", "second\u2028text", {}),
    ]


def test_mixed_upload_keeps_upload_order() -> None:
    archive = make_zip(
        [
            ("__MACOSX/._x.txt", b"junk"),
            ("z/", b""),
            ("z/.DS_Store", b"\x00\x01"),
            ("z/x.txt", b"x text"),
            ("z/data.jsonl", b'{"custom_id": "from-zip", "text": "zip line"}\n'),
            ("a.md", b"a text"),
        ]
    )
    documents = parse(
        UploadFile("first.txt", b"first"),
        UploadFile("bundle.zip", archive),
        UploadFile("last.jsonl", b'{"custom_id": "j1", "text": "t1"}\n{"custom_id": "j2", "text": "t2"}'),
        UploadFile("page.pdf", make_pdf("pdf text")),
    )
    assert [d.custom_id for d in documents] == [
        "first.txt", "z/x.txt", "from-zip", "a.md", "j1", "j2", "page.pdf"
    ]  # fmt: skip


# --- what is refused ---------------------------------------------------------------------------------


def test_refusals_answer_422_or_413() -> None:
    error = refused(UploadFile("tool.exe", b"MZ"))
    assert (error.code, status_for(error)) == ("invalid_upload", 422)
    too_large = refused(
        UploadFile("long.txt", b"x" * 11),
        limits=BatchUploadSettings(max_file_bytes=10),
        error=UploadTooLargeError,
    )
    assert (too_large.code, status_for(too_large)) == ("upload_too_large", 413)


def test_unsupported_extension() -> None:
    error = refused(UploadFile("ok.txt", b"fine"), UploadFile("tool.exe", b"MZ\x90\x00"))
    assert "tool.exe" in error.message
    assert "unsupported file type (.exe)" in error.message
    assert error.filename == "tool.exe"
    assert "no extension" in refused(UploadFile("README", b"text")).message


def test_invalid_utf8_text() -> None:
    error = refused(UploadFile("bad.txt", b"line one\nline \xff\xfe two\n"))
    assert error.message == "bad.txt: not valid UTF-8 text (line 2)"


def test_binary_that_decodes_is_refused() -> None:
    assert "binary" in refused(UploadFile("nul.md", b"abc\x00def")).message


@pytest.mark.parametrize(
    ("name", "content"),
    [("blank.txt", b" \n\t \r\n"), ("bom-only.md", b"\xef\xbb\xbf"), ("empty.html", b"<p> </p>")],
)
def test_empty_documents(name: str, content: bytes) -> None:
    assert refused(UploadFile(name, content)).message == f"{name}: document is empty"


def test_zero_documents() -> None:
    assert refused().message == "the upload contains no documents"


def test_empty_zip() -> None:
    error = refused(UploadFile("empty.zip", make_zip([("dir/", b""), ("__MACOSX/._a.txt", b"x")])))
    assert error.message == "empty.zip: zip archive contains no documents"


def test_corrupt_zip() -> None:
    assert "not a valid zip archive" in refused(UploadFile("broken.zip", b"PK\x03\x04garbage")).message


@pytest.mark.parametrize("inner", ["inner.zip", "deep/x.tar.gz", "a.7z", "b.rar", "c.tar"])
def test_nested_archive(inner: str) -> None:
    archive = make_zip([("ok.txt", b"fine"), (inner, make_zip([("a.txt", b"a")]))])
    error = refused(UploadFile("outer.zip", archive))
    assert error.message == f"outer.zip: {inner}: nested archives are not accepted"


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.txt", "'..'"),
        ("docs/../../evil.txt", "'..'"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "drive letter"),
        ("C:\\Windows\\evil.txt", "backslash"),
        ("..\\evil.txt", "backslash"),
    ],
)
def test_unsafe_paths(member: str, reason: str) -> None:
    # writestr normalizes nothing when handed a ZipInfo, so the name lands in the archive as given.
    archive = make_zip([("ok.txt", b"fine"), (zipfile.ZipInfo(member), b"evil")])
    error = refused(UploadFile("evil.zip", archive))
    assert error.message.startswith(f"evil.zip: {member}: ")
    assert reason in error.message


def test_symlink_member() -> None:
    link = zipfile.ZipInfo("link.txt")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    error = refused(UploadFile("links.zip", make_zip([(link, b"/etc/passwd")])))
    assert error.message == "links.zip: link.txt: symbolic link in archive"


def test_encrypted_member() -> None:
    archive = bytearray(make_zip([("secret.txt", b"hidden text")]))
    # zipfile cannot write encrypted members; set the "encrypted" flag in both headers by hand.
    local = archive.index(b"PK\x03\x04")
    central = archive.index(b"PK\x01\x02")
    archive[local + 6] |= 0x1
    archive[central + 8] |= 0x1
    error = refused(UploadFile("locked.zip", bytes(archive)))
    assert error.message == "locked.zip: secret.txt: encrypted archive member"


class Inflation:
    """Counts the bytes zipfile hands out, to prove a bomb was not inflated (no timing asserts)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        self._monkeypatch = monkeypatch
        self._open = zipfile.ZipFile.open

        # A plain function, so that it binds to the ZipFile like the method it replaces.
        def counting_open(
            archive: zipfile.ZipFile, name: str | zipfile.ZipInfo, mode: Literal["r", "w"] = "r"
        ) -> IO[bytes]:
            if mode != "r":  # make_zip writes through open() too
                return self._open(archive, name, mode)
            return self._counting_open(archive, name)

        monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)

    def _counting_open(self, archive: zipfile.ZipFile, name: str | zipfile.ZipInfo) -> IO[bytes]:
        stream = self._open(archive, self.resolve(archive, name), "r")
        real_read = stream.read

        def read(n: int = -1) -> bytes:
            data = real_read(n)
            self.bytes += len(data)
            return data

        stream.read = read  # type: ignore[method-assign]
        return stream

    def resolve(self, archive: zipfile.ZipFile, name: str | zipfile.ZipInfo) -> str | zipfile.ZipInfo:
        return name

    def serve_lying_headers(self, file_size: int, compress_size: int) -> None:
        """The parser sees headers announcing these sizes; the reader inflates the real data."""
        real_infolist = zipfile.ZipFile.infolist

        def lying_infolist(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
            lies = []
            for info in real_infolist(archive):
                lie = copy.copy(info)
                lie.file_size, lie.compress_size = file_size, compress_size
                lies.append(lie)
            return lies

        def honest(archive: zipfile.ZipFile, name: str | zipfile.ZipInfo) -> str | zipfile.ZipInfo:
            # The real entry, so zipfile's own stop at the announced size does not hide the parser's.
            return archive.getinfo(name.filename if isinstance(name, zipfile.ZipInfo) else name)

        self._monkeypatch.setattr(zipfile.ZipFile, "infolist", lying_infolist)
        self.resolve = honest  # type: ignore[method-assign]


@pytest.fixture
def inflation(monkeypatch: pytest.MonkeyPatch) -> Inflation:
    return Inflation(monkeypatch)


def test_zip_bomb_fails_fast_under_a_small_limit(inflation: Inflation) -> None:
    bomb = make_zip([("bomb.txt", b"a" * 50_000_000)], level=9)
    assert len(bomb) < 100_000
    limits = BatchUploadSettings(max_file_bytes=1_000_000, max_total_bytes=5_000_000)
    error = refused(UploadFile("bomb.zip", bomb), limits=limits, error=UploadTooLargeError)
    assert error.message.startswith("bomb.zip: bomb.txt: ")
    assert inflation.bytes < 1_100_000


def _lie_about_size(archive: bytes, claimed: int) -> bytes:
    """Rewrite the uncompressed size in the local and central headers of the only member."""
    data = bytearray(archive)
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = claimed.to_bytes(4, "little")
    data[central + 24 : central + 28] = claimed.to_bytes(4, "little")
    return bytes(data)


def test_zip_bomb_with_lying_header_fails_fast(inflation: Inflation) -> None:
    # The header claims 10 bytes: the header checks pass, and the real inflation must still stop early.
    bomb = _lie_about_size(make_zip([("bomb.txt", b"a" * 50_000_000)], level=9), claimed=10)
    limits = BatchUploadSettings(max_file_bytes=1_000_000, max_total_bytes=5_000_000)
    with pytest.raises(UploadError) as caught:
        parse(UploadFile("liar.zip", bomb), limits=limits)
    assert caught.value.message.startswith("liar.zip: bomb.txt: ")
    assert inflation.bytes < 1_100_000


def test_zip_bomb_counting_does_not_trust_the_header(inflation: Inflation) -> None:
    archive = make_zip([("big.txt", b"c" * 3_000_000)], level=1)
    inflation.serve_lying_headers(file_size=10, compress_size=100_000)
    limits = BatchUploadSettings(max_file_bytes=1_000_000)
    error = refused(UploadFile("count.zip", archive), limits=limits, error=UploadTooLargeError)
    assert error.message == "count.zip: big.txt: document is larger than the limit of 1000000 bytes"
    assert inflation.bytes < 1_100_000, "kept inflating past the limit"
    inflation.bytes = 0
    limits = BatchUploadSettings(max_total_bytes=2_000_000)
    error = refused(UploadFile("count.zip", archive), limits=limits, error=UploadTooLargeError)
    assert error.message.startswith("count.zip: big.txt: upload is larger than the limit of 2000000 bytes")
    assert inflation.bytes < 2_100_000, "kept inflating past the limit"


def test_zip_bomb_ratio_with_lying_header(inflation: Inflation) -> None:
    # Within every byte limit and announcing a harmless size, yet inflating 1000:1.
    archive = make_zip([("ratio.txt", b"r" * 9_000_000)], level=9)
    inflation.serve_lying_headers(file_size=10, compress_size=10_000)
    error = refused(UploadFile("ratio.zip", archive), error=UploadTooLargeError)
    assert error.message == "ratio.zip: ratio.txt: compression ratio over 200:1, refused as a zip bomb"
    assert inflation.bytes < 2_100_000


def test_zip_bomb_ratio_under_generous_limits(inflation: Inflation) -> None:
    # Within every byte limit, yet announcing 1000:1: refused from the header, nothing inflated.
    bomb = make_zip([("ratio.txt", b"b" * 9_000_000)], level=9)
    error = refused(UploadFile("ratio.zip", bomb), error=UploadTooLargeError)
    assert error.message == "ratio.zip: ratio.txt: compression ratio over 200:1, refused as a zip bomb"
    assert inflation.bytes == 0


def test_total_limit_across_members() -> None:
    archive = make_zip([(f"{i}.txt", bytes([65 + i]) * 400) for i in range(5)])
    limits = BatchUploadSettings(max_file_bytes=1_000, max_total_bytes=1_000)
    error = refused(UploadFile("big.zip", archive), limits=limits, error=UploadTooLargeError)
    assert error.message == "big.zip: 2.txt: upload is larger than the limit of 1000 bytes (unpacked)"


def test_total_limit_across_files() -> None:
    limits = BatchUploadSettings(max_file_bytes=100, max_total_bytes=150)
    error = refused(
        UploadFile("a.txt", b"a" * 100),
        UploadFile("b.txt", b"b" * 100),
        limits=limits,
        error=UploadTooLargeError,
    )
    assert error.message.startswith("b.txt: upload is larger than the limit of 150 bytes")


def test_document_over_file_limit() -> None:
    limits = BatchUploadSettings(max_file_bytes=10)
    error = refused(UploadFile("long.txt", b"x" * 11), limits=limits, error=UploadTooLargeError)
    assert error.message == "long.txt: document is larger than the limit of 10 bytes"
    jsonl = b'{"custom_id": "ok", "text": "short"}\n{"custom_id": "long", "text": "xxxxxxxxxxx"}\n'
    error = refused(UploadFile("docs.jsonl", jsonl), limits=limits, error=UploadTooLargeError)
    assert error.message.startswith("docs.jsonl line 2: ")


def test_too_many_files() -> None:
    limits = BatchUploadSettings(max_files=3)
    files = [UploadFile(f"{i}.txt", b"text") for i in range(4)]
    error = refused(*files, limits=limits, error=UploadTooLargeError)
    assert error.message == "3.txt: more than 3 documents in one upload"
    archive = make_zip((f"{i}.txt", b"text") for i in range(4))
    error = refused(UploadFile("many.zip", archive), limits=limits, error=UploadTooLargeError)
    assert error.message == "many.zip: more than 3 documents in one upload"


def test_duplicate_custom_ids() -> None:
    error = refused(
        UploadFile("a.txt", b"text"),
        UploadFile("ids.jsonl", b'{"custom_id": "x", "text": "t"}\n{"custom_id": "a.txt", "text": "t"}\n'),
    )
    assert error.message == "ids.jsonl line 2: duplicate custom_id 'a.txt' (also used by a.txt)"
    assert (error.filename, error.line) == ("ids.jsonl", 2)
    archive = make_zip([("docs/a.md", b"one")])
    error = refused(UploadFile("one.zip", archive), UploadFile("two.zip", archive))
    assert (
        error.message
        == "two.zip: docs/a.md: duplicate custom_id 'docs/a.md' (also used by one.zip: docs/a.md)"
    )


def test_bad_json_on_line_3() -> None:
    body = b'{"custom_id": "a", "text": "t"}\n\n{"custom_id": "b", "text": \n'
    error = refused(UploadFile("bad.jsonl", body))
    assert error.message.startswith("bad.jsonl line 3: invalid JSON")
    assert error.line == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('["custom_id", "text"]', "expected a JSON object, got an array"),
        ('{"custom_id": "a", "text": "t", "extra": 1}', "unknown key 'extra'"),
        ('{"text": "t"}', "custom_id is missing"),
        ('{"custom_id": "", "text": "t"}', "custom_id is empty"),
        ('{"custom_id": 7, "text": "t"}', "custom_id must be a string, not a number"),
        ('{"custom_id": "a"}', "text is missing"),
        ('{"custom_id": "a", "text": "  "}', "text is empty"),
        ('{"custom_id": "a", "text": ["t"]}', "text must be a string, not an array"),
        ('{"custom_id": "a", "text": "t", "params": []}', "params must be an object, not an array"),
        ('{"custom_id": "a", "text": "t", "params": null}', "params must be an object, not null"),
        ('{"custom_id": "a", "custom_id": "b", "text": "t"}', "duplicate key 'custom_id'"),
        ('{"custom_id": "a", "text": "t", "params": {"x": NaN}}', "NaN is not valid JSON"),
        ('{"custom_id": "' + "i" * 513 + '", "text": "t"}', "longer than 512 characters"),
        ('{"custom_id": "a\\u0000", "text": "t"}', "custom_id contains a NUL character"),
        ('{"custom_id": "a", "text": "t\\u0000"}', "text contains a NUL character"),
    ],
)
def test_bad_jsonl_records(line: str, reason: str) -> None:
    body = '{"custom_id": "first", "text": "fine"}\n' + line + "\n"
    error = refused(UploadFile("records.jsonl", body.encode()))
    assert error.message.startswith("records.jsonl line 2: ")
    assert reason in error.message


def test_empty_jsonl() -> None:
    assert refused(UploadFile("none.jsonl", b"\n  \n")).message == "none.jsonl: JSONL file holds no documents"


def test_pdf_refusals() -> None:
    assert "cannot read PDF" in refused(UploadFile("broken.pdf", b"%PDF-1.4\nnot really")).message
    blank = make_pdf("")
    assert refused(UploadFile("scan.pdf", blank)).message.startswith("scan.pdf: PDF has no extractable text")


def test_encrypted_pdf() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf("secret text"))))
    writer.encrypt(user_password="s3cret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert refused(UploadFile("locked.pdf", buffer.getvalue())).message == "locked.pdf: PDF is encrypted"


def test_all_or_nothing_names_the_first_problem_only() -> None:
    error = refused(
        UploadFile("ok.txt", b"fine"),
        UploadFile("bad.txt", b"\xff"),
        UploadFile("worse.exe", b"MZ"),
    )
    assert error.filename == "bad.txt"
