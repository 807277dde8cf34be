"""Batch uploads parsed as they stream in, every file of an upload into one spool.

Starlette's form parser gives each file part a spooled file of its own that stays in memory up to
1 MB, so an upload of many small files was held in memory whole, up to the body limit: a 500 MB
chunked upload of 100 kB files grew the gateway by ~220 MB before its 413 (``make bench``,
upload). Here every file part is appended to one ``SpooledTemporaryFile`` for the whole upload,
which keeps at most ``SPOOL_MEMORY_BYTES`` in memory and one file descriptor open, whatever the
shape of the upload; form fields are few, named and small. The limits are the upload's own: one
file more than ``batches.max_files`` is a 413 the moment its part begins.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from gateway.errors import GatewayError, InvalidRequestError, PayloadTooLargeError
from gateway.uploads import UploadTooLargeError

SPOOL_MEMORY_BYTES = 1 << 20


class InvalidFormError(GatewayError):
    """The body is not well-formed multipart/form-data."""

    code = "invalid_form"


@dataclass(frozen=True)
class FilePart:
    """One uploaded file: where its bytes lie in the upload's spool."""

    filename: str
    offset: int
    size: int


class UploadSpool:
    """The bytes of every file of one upload, in order, in memory up to SPOOL_MEMORY_BYTES, then on disk."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        self.size = 0

    @property
    def on_disk(self) -> bool:
        return self.size > SPOOL_MEMORY_BYTES

    def write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._file.write(piece)
            self.size += len(piece)

    def read(self, part: FilePart) -> bytes:
        self._file.seek(part.offset)
        return self._file.read(part.size)

    def close(self) -> None:
        self._file.close()


@dataclass
class UploadForm:
    """A parsed batch upload: its text fields by name and its files, in upload order."""

    fields: dict[str, str]
    files: list[FilePart]
    spool: UploadSpool


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    disposition: bytes = b""
    header_name: bytes = b""
    header_value: bytes = b""
    offset: int = 0
    value: bytearray = field(default_factory=bytearray)


class _Collector:
    """python-multipart callbacks that sort parts into fields and spooled files, checking the limits."""

    def __init__(
        self, *, file_field: str, text_fields: frozenset[str], max_files: int, max_field_bytes: int
    ) -> None:
        self.file_field = file_field
        self.text_fields = text_fields
        self.max_files = max_files
        self.max_field_bytes = max_field_bytes
        self.fields: dict[str, str] = {}
        self.files: list[FilePart] = []
        # File bytes parsed from the last chunk, written to the spool between chunks.
        self.pending: list[bytes] = []
        # Bytes of file data handed out so far, spooled or pending: the next part's offset.
        self.cursor = 0
        self.ended = False
        self._part = _Part()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._part.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._part.header_name.lower() == b"content-disposition":
            self._part.disposition = self._part.header_value
        self._part.header_name = b""
        self._part.header_value = b""

    def on_headers_finished(self) -> None:
        part = self._part
        _kind, options = parse_options_header(part.disposition)
        if b"name" not in options:
            raise InvalidFormError("a multipart part has no Content-Disposition name")
        part.name = _utf8(options[b"name"], "a form field name")
        if b"filename" in options:
            if part.name != self.file_field:
                raise InvalidRequestError(
                    f"{part.name}: unknown file field (files go in {self.file_field!r})"
                )
            if len(self.files) >= self.max_files:
                raise UploadTooLargeError(f"more than {self.max_files} documents in one upload")
            part.filename = _utf8(options[b"filename"], "a file name")
            part.offset = self.cursor
        elif part.name == self.file_field:
            raise InvalidRequestError(f"{self.file_field}: must be a file, not a text field")
        elif part.name not in self.text_fields:
            raise InvalidRequestError(f"{part.name}: unknown form field")
        elif part.name in self.fields:
            raise InvalidRequestError(f"{part.name}: given more than once")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.filename is not None:
            self.pending.append(data[start:end])
            self.cursor += end - start
            return
        if len(part.value) + end - start > self.max_field_bytes:
            raise PayloadTooLargeError(
                f"{part.name} is larger than the limit of {self.max_field_bytes} bytes"
            )
        part.value += data[start:end]

    def on_part_end(self) -> None:
        part = self._part
        if part.filename is not None:
            self.files.append(FilePart(part.filename, part.offset, self.cursor - part.offset))
        elif part.name:
            self.fields[part.name] = _utf8(bytes(part.value), part.name)

    def on_end(self) -> None:
        self.ended = True


def _utf8(raw: bytes, what: str) -> str:
    # python-multipart hands header parameters over as latin-1 bytes of what was sent.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{what} is not valid UTF-8") from None


async def parse_upload_form(
    request: Request,
    *,
    file_field: str,
    text_fields: frozenset[str],
    max_files: int,
    max_field_bytes: int,
) -> UploadForm:
    """Read the multipart body of ``request`` as it arrives; the caller closes the spool.

    Raises :class:`InvalidFormError` (400) for a body that is not well-formed multipart,
    :class:`InvalidRequestError` (422) for another content type or an unknown, repeated or
    misplaced field, :class:`UploadTooLargeError` (413) for one file too many and
    :class:`PayloadTooLargeError` (413) for a text field over ``max_field_bytes``.
    """
    media_type, options = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise InvalidRequestError(f"body: expected multipart/form-data with a {file_field!r} file field")
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidFormError("multipart/form-data without a boundary")
    collector = _Collector(
        file_field=file_field, text_fields=text_fields, max_files=max_files, max_field_bytes=max_field_bytes
    )
    spool = UploadSpool()
    try:
        parser: Any = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            parser.write(chunk)
            if collector.pending:
                if spool.on_disk:
                    # Past the memory part the spool is a real file: keep disk writes off the loop.
                    await asyncio.to_thread(spool.write, collector.pending)
                else:
                    spool.write(collector.pending)
                collector.pending = []
        parser.finalize()
    except FormParserError as exc:
        spool.close()
        raise InvalidFormError(f"malformed multipart body ({exc})") from None
    except ClientDisconnect:
        spool.close()
        raise InvalidFormError("the client went away before the upload ended") from None
    except BaseException:
        spool.close()
        raise
    if not collector.ended:
        spool.close()
        raise InvalidFormError("the multipart body ended before its closing boundary")
    return UploadForm(fields=collector.fields, files=collector.files, spool=spool)
