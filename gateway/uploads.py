"""Turn the files of a batch upload into documents, all or nothing.

The route hands over every multipart part as an :class:`UploadFile`; :func:`parse_upload` returns
one :class:`Document` per document in upload order or raises :class:`UploadError` naming the file
(and line) of the first problem, so a client never gets half a batch queued.

Everything here is synchronous and CPU-bound (inflating, PDF parsing): the route runs it in a
thread. Nothing is ever written to disk, yet archive paths are still checked, because the same
names become ``custom_id`` values that clients may use as paths when they save results.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from gateway.errors import GatewayError
from schema.settings import BatchUploadSettings
from schema.storable import json_problem, text_problem

# The jobs.custom_id column is VARCHAR(512); a longer id would fail at insert time, after validation.
MAX_CUSTOM_ID_CHARS = 512

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".rst"})
HTML_EXTENSIONS = frozenset({".html", ".htm"})
PDF_EXTENSIONS = frozenset({".pdf"})
DOCUMENT_EXTENSIONS = TEXT_EXTENSIONS | HTML_EXTENSIONS | PDF_EXTENSIONS
JSONL_EXTENSIONS = frozenset({".jsonl"})
ZIP_EXTENSIONS = frozenset({".zip"})
# Named so that a nested archive gets a clear refusal instead of "unsupported file type".
ARCHIVE_EXTENSIONS = frozenset(
    {".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst", ".7z", ".rar", ".jar", ".lz4"}
)
SUPPORTED_EXTENSIONS = DOCUMENT_EXTENSIONS | JSONL_EXTENSIONS | ZIP_EXTENSIONS

# Bytes inflated per read: small enough that a bomb is caught within one chunk of the limit.
_CHUNK_BYTES = 64 * 1024
# Plain text rarely compresses better than 20:1; 200:1 over a megabyte is a crafted payload.
BOMB_RATIO = 200
BOMB_MIN_BYTES = 1_000_000

# Files that archivers add on their own; refusing the upload over them would only puzzle users.
_JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_ZIP_FLAG_ENCRYPTED = 0x1
_ZIP_FLAG_STRONG_ENCRYPTION = 0x40


@dataclass(frozen=True)
class UploadFile:
    """One multipart part as the route received it."""

    filename: str
    content: bytes


@dataclass(frozen=True)
class Document:
    """One document to summarize.

    ``custom_id`` is the JSONL ``custom_id``, the uploaded file's name, or for a zip member its path
    inside the archive; it is unique within the upload.
    """

    custom_id: str
    text: str
    params: dict[str, Any]


class UploadError(GatewayError):
    """The upload is refused as a whole; the message names the file (and line) at fault."""

    code = "invalid_upload"

    def __init__(self, message: str, *, filename: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line


class UploadTooLargeError(UploadError):
    """Too many documents, a document or the whole upload over its byte limit, or a zip bomb."""

    code = "upload_too_large"


def parse_upload(files: Sequence[UploadFile], limits: BatchUploadSettings) -> list[Document]:
    """Every document of ``files`` in order: files as uploaded, zip members and JSONL lines as stored.

    Raises :class:`UploadError` (422) or :class:`UploadTooLargeError` (413) at the first problem.
    """
    collector = _Collector(limits)
    for upload in files:
        name = upload.filename
        if not name or not name.strip():
            raise UploadError("an uploaded file has no file name")
        ext = _extension(name)
        if ext in ZIP_EXTENSIONS:
            _parse_zip(upload, collector)
        elif ext in JSONL_EXTENSIONS:
            collector.charge_total(len(upload.content), _Where(name))
            _parse_jsonl(upload.content, _Where(name), collector)
        elif ext in DOCUMENT_EXTENSIONS:
            where = _Where(name)
            collector.check_file_size(len(upload.content), where)
            collector.charge_total(len(upload.content), where)
            collector.add(name, _extract(ext, upload.content, where, collector.limits), {}, where)
        else:
            raise UploadError(f"{name}: {_unsupported(ext)}", filename=name)
    if not collector.documents:
        raise UploadError("the upload contains no documents")
    return collector.documents


# --- bookkeeping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where a document came from, for messages: a file, a zip member, a JSONL line."""

    filename: str
    member: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        text = self.filename if self.member is None else f"{self.filename}: {self.member}"
        return text if self.line is None else f"{text} line {self.line}"

    def at_line(self, line: int) -> _Where:
        return _Where(self.filename, self.member, line)

    def error(self, message: str) -> UploadError:
        return UploadError(f"{self}: {message}", filename=self.filename, line=self.line)

    def too_large(self, message: str) -> UploadTooLargeError:
        return UploadTooLargeError(f"{self}: {message}", filename=self.filename, line=self.line)


class _Collector:
    def __init__(self, limits: BatchUploadSettings) -> None:
        self.limits = limits
        self.documents: list[Document] = []
        self.total_bytes = 0
        self._seen: dict[str, _Where] = {}

    def check_count(self, more: int, where: _Where) -> None:
        # Checked before inflating a zip's members too, so an archive of a million tiny files is
        # refused from its directory alone.
        if len(self.documents) + more > self.limits.max_files:
            raise where.too_large(f"more than {self.limits.max_files} documents in one upload")

    def check_file_size(self, size: int, where: _Where) -> None:
        if size > self.limits.max_file_bytes:
            raise where.too_large(f"document is larger than the limit of {self.limits.max_file_bytes} bytes")

    def check_total(self, more: int, where: _Where) -> None:
        if self.total_bytes + more > self.limits.max_total_bytes:
            raise where.too_large(
                f"upload is larger than the limit of {self.limits.max_total_bytes} bytes (unpacked)"
            )

    def charge_total(self, size: int, where: _Where) -> None:
        self.check_total(size, where)
        self.total_bytes += size

    def add(self, custom_id: str, text: str, params: dict[str, Any], where: _Where) -> None:
        # Every document passes here, whatever its format: refuse what the database cannot store
        # now, as a clear 422, rather than at insert time as a 500.
        for name, value in (("custom_id", custom_id), ("text", text)):
            problem = text_problem(value)
            if problem:
                raise where.error(f"{name} {problem}")
        problem = json_problem(params)
        if problem:
            raise where.error(f"params: {problem}")
        if len(custom_id) > MAX_CUSTOM_ID_CHARS:
            raise where.error(f"custom_id is longer than {MAX_CUSTOM_ID_CHARS} characters")
        if not text.strip():
            raise where.error("document is empty")
        first = self._seen.get(custom_id)
        if first is not None:
            raise where.error(f"duplicate custom_id {custom_id!r} (also used by {first})")
        self.check_count(1, where)
        self.check_file_size(len(text.encode("utf-8", "surrogatepass")), where)
        self._seen[custom_id] = where
        self.documents.append(Document(custom_id=custom_id, text=text, params=params))


def _extension(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def _unsupported(ext: str) -> str:
    accepted = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    shown = ext or "no extension"
    return f"unsupported file type ({shown}); accepted: {accepted}"


# --- documents -------------------------------------------------------------------------------------


def _extract(ext: str, content: bytes, where: _Where, limits: BatchUploadSettings) -> str:
    if ext in PDF_EXTENSIONS:
        text = _pdf_text(content, where, limits)
    elif ext in HTML_EXTENSIONS:
        text = html_to_text(_decode(content, where, html=True))
    else:
        text = _normalize_newlines(_decode(content, where)).strip()
    if not text:
        raise where.error("document is empty")
    return text


_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode(content: bytes, where: _Where, *, html: bool = False) -> str:
    encoding = "utf-8"
    body = content
    for bom, bom_encoding in _BOMS:
        if content.startswith(bom):
            encoding, body = bom_encoding, content[len(bom) :]
            break
    else:
        if html:
            # A page saved from the web often says its charset only in a <meta> tag.
            match = _META_CHARSET_RE.search(content[:4096])
            if match is not None:
                encoding = _known_codec(match.group(1).decode("ascii")) or encoding
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1 if encoding == "utf-8" else None
        suffix = f" (line {line})" if line is not None else ""
        raise where.error(f"not valid {encoding.upper()} text{suffix}") from exc
    except UnicodeError as exc:
        # Codecs such as idna or punycode fail with the bare base class.
        raise where.error(f"not valid {encoding.upper()} text") from exc
    if "\x00" in text:
        # Valid UTF-8 can still be binary; NUL is also refused by PostgreSQL text columns.
        raise where.error("looks binary (contains NUL characters), not text")
    return text


def _known_codec(name: str) -> str | None:
    """The codec a declared charset names, if it is a text encoding; None means "ignore the label".

    codecs.lookup also knows bytes-to-bytes transforms (base64, zlib, rot13, ...) and "undefined",
    which bytes.decode refuses outright; a page naming one is read as if it named nothing, as
    browsers do with labels they do not know.
    """
    try:
        info = codecs.lookup(name)
        "".encode(info.name).decode(info.name)
    except (LookupError, UnicodeError):
        return None
    return info.name


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf_text(content: bytes, where: _Where, limits: BatchUploadSettings) -> str:
    # Imported here: pypdf is only needed by uploads that carry PDFs.
    from pypdf import PdfReader

    # pypdf raises a zoo of exception types (KeyError, ValueError, AssertionError, ...) on malformed
    # files; any of them means "cannot read this PDF", which the client must hear as such.
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted:
            # PDFs "protected" only with an owner password open with an empty user password, as
            # in every viewer; anything else needs a password we do not have.
            try:
                opened = reader.decrypt("")
            except Exception as exc:
                raise where.error("PDF is encrypted") from exc
            if not opened:
                raise where.error("PDF is encrypted")
        pages: list[str] = []
        size = 0
        for page in reader.pages:
            page_text = page.extract_text() or ""
            size += len(page_text.encode("utf-8", "surrogatepass"))
            if size > limits.max_file_bytes:
                raise where.too_large(
                    f"extracted text is larger than the limit of {limits.max_file_bytes} bytes"
                )
            pages.append(page_text)
    except UploadError:
        raise
    except Exception as exc:
        raise where.error(f"cannot read PDF ({type(exc).__name__}: {exc})") from exc
    text = _normalize_newlines("\n\n".join(pages)).replace("\x00", "").strip()
    if not text:
        raise where.error("PDF has no extractable text (a scan without a text layer?)")
    return text


# --- HTML ------------------------------------------------------------------------------------------

_SKIP_TAGS = frozenset({"script", "style", "head", "noscript", "template", "svg"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div", "dl",
        "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_BREAK = "\x00"  # a paragraph break; NUL never survives decoding, so it cannot collide with text
_SPACES_RE = re.compile(r"[ \t\r\n\f\v]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" or (self._skip == ["head"] and tag in _BLOCK_TAGS):
            # </head> (and <body>) are optional in HTML: body content ends the head whatever came before.
            self._skip.clear()
        if self._skip:
            if tag in _SKIP_TAGS:
                self._skip.append(tag)
            return
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append(_BREAK)
            if tag == "pre":
                self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <hr/> and self-closed skip tags (<svg/>) open nothing.
        if not self._skip and tag == "br":
            self.parts.append("\n")
        elif not self._skip and tag in _BLOCK_TAGS:
            self.parts.append(_BREAK)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                # Close up to the matching tag: unclosed children must not hide the rest of the page.
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in _BLOCK_TAGS:
            self.parts.append(_BREAK)
            if tag == "pre" and self._pre:
                self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        # Source line breaks are mere spaces in HTML, except inside <pre>.
        self.parts.append(data if self._pre else _SPACES_RE.sub(" ", data))


def html_to_text(markup: str) -> str:
    """The readable text of an HTML page: no head, scripts or styles; blocks become paragraphs."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    raw = "".join(parser.parts).replace("\xa0", " ")
    paragraphs = []
    for block in raw.split(_BREAK):
        lines = [line.strip() for line in _normalize_newlines(block).split("\n")]
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    # No html.unescape() here: convert_charrefs already decoded entities, and a second pass would
    # turn a literal "&amp;lt;" into "<".
    return "\n\n".join(paragraphs)


# --- JSONL -----------------------------------------------------------------------------------------

_JSONL_KEYS = frozenset({"custom_id", "text", "params"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json(text: str) -> Any:
    """The value of a JSON text a client sent outside a JSON body (a JSONL line, a form field).

    Every way it can fail is a ValueError with a message for the client: bad syntax
    (JSONDecodeError, whose message carries the column), NaN or Infinity, a duplicate key, an
    integer past Python's digit limit (a bare ValueError) and nesting deep enough to exhaust the
    parser's recursion (a RecursionError, which used to escape as a 500). What the database cannot
    store is :func:`schema.storable.json_problem`'s concern, once the value is parsed.
    """
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_jsonl(content: bytes, where: _Where, collector: _Collector) -> None:
    text = _decode(content, where)
    before = len(collector.documents)
    # Split on "\n" only: str.splitlines() would also split at U+2028 and friends, which JSON
    # allows raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        at = where.at_line(number)
        try:
            record = parse_json(line)
        except ValueError as exc:
            raise at.error(f"invalid JSON: {exc}") from exc
        custom_id, doc_text, params = _jsonl_record(record, at)
        collector.add(custom_id, doc_text, params, at)
    if len(collector.documents) == before:
        raise where.error("JSONL file holds no documents")


def _jsonl_record(record: object, at: _Where) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(record, dict):
        raise at.error(f"expected a JSON object, got {_json_type(record)}")
    unknown = sorted(set(record) - _JSONL_KEYS)
    if unknown:
        raise at.error(f"unknown key {unknown[0]!r} (allowed: custom_id, text, params)")
    custom_id = record.get("custom_id")
    if custom_id is None:
        raise at.error("custom_id is missing")
    if not isinstance(custom_id, str):
        raise at.error(f"custom_id must be a string, not {_json_type(custom_id)}")
    if not custom_id.strip():
        raise at.error("custom_id is empty")
    text = record.get("text")
    if text is None:
        raise at.error("text is missing")
    if not isinstance(text, str):
        raise at.error(f"text must be a string, not {_json_type(text)}")
    if not text.strip():
        raise at.error("text is empty")
    params = record.get("params", {})
    if not isinstance(params, dict):
        raise at.error(f"params must be an object, not {_json_type(params)}")
    return custom_id, text, params


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- zip -------------------------------------------------------------------------------------------


def _parse_zip(upload: UploadFile, collector: _Collector) -> None:
    where = _Where(upload.filename)
    try:
        archive = zipfile.ZipFile(io.BytesIO(upload.content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise where.error(f"not a valid zip archive ({exc})") from exc
    with archive:
        members = list(_zip_documents(archive, where))
        # The directory alone tells whether the count fits: refuse before inflating anything.
        collector.check_count(len(members), where)
        for info in members:
            member_where = _Where(upload.filename, info.filename)
            ext = _extension(info.filename)
            if ext in JSONL_EXTENSIONS:
                content = _read_member(archive, info, member_where, collector, per_document=False)
                _parse_jsonl(content, member_where, collector)
            else:
                content = _read_member(archive, info, member_where, collector, per_document=True)
                text = _extract(ext, content, member_where, collector.limits)
                collector.add(info.filename, text, {}, member_where)
    if not members:
        raise where.error("zip archive contains no documents")


def _zip_documents(archive: zipfile.ZipFile, where: _Where) -> Iterator[zipfile.ZipInfo]:
    """The members to read, in archive order, after refusing every unsafe entry."""
    for info in archive.infolist():
        name = info.filename
        member = _Where(where.filename, name)
        # Path checks apply to every entry, directories and junk included: an archive carrying a
        # traversal path was crafted, and is refused outright.
        if "\\" in name or _DRIVE_RE.match(name):
            raise member.error("Windows-style path (backslash or drive letter) in archive")
        if name.startswith("/"):
            raise member.error("absolute path in archive")
        parts = name.split("/")
        if ".." in parts:
            raise member.error("path with '..' in archive")
        if info.is_dir():
            continue
        if any(part.startswith(".") or part.lower() in _JUNK_NAMES for part in parts if part):
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise member.error("symbolic link in archive")
        if info.flag_bits & (_ZIP_FLAG_ENCRYPTED | _ZIP_FLAG_STRONG_ENCRYPTION):
            raise member.error("encrypted archive member")
        ext = _extension(name)
        if ext in ARCHIVE_EXTENSIONS:
            raise member.error("nested archives are not accepted")
        if ext not in DOCUMENT_EXTENSIONS and ext not in JSONL_EXTENSIONS:
            raise member.error(_unsupported(ext))
        yield info


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    where: _Where,
    collector: _Collector,
    *,
    per_document: bool,
) -> bytes:
    # An honest header lets an oversized member be refused without inflating a byte.
    if per_document:
        collector.check_file_size(info.file_size, where)
    collector.check_total(info.file_size, where)
    bomb_threshold = max(BOMB_MIN_BYTES, BOMB_RATIO * max(info.compress_size, 1))
    if info.file_size > bomb_threshold:
        raise where.too_large(f"compression ratio over {BOMB_RATIO}:1, refused as a zip bomb")
    # A crafted header lies, so the limits are enforced again on the bytes actually inflated
    # (zipfile also stops at the announced size and then fails the CRC, but that is its detail).
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                size += len(chunk)
                if size > bomb_threshold:
                    raise where.too_large(f"compression ratio over {BOMB_RATIO}:1, refused as a zip bomb")
                if per_document:
                    collector.check_file_size(size, where)
                collector.charge_total(len(chunk), where)
                chunks.append(chunk)
    except UploadError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise where.error(f"corrupt archive member ({exc})") from exc
    except (NotImplementedError, RuntimeError) as exc:
        # Unsupported compression (deflate64, ...) or encryption the flags did not announce.
        raise where.error(f"cannot unpack archive member ({exc})") from exc
    return b"".join(chunks)
