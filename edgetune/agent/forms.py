"""An image sent to /predict as ``multipart/form-data`` (an HTML form, ``curl -F``).

The body is read first under /predict's own byte and time limits; this only takes it apart,
with python-multipart's streaming parser, and accepts exactly one part: an image file.
"""

from __future__ import annotations

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from edgetune.errors import EdgetuneError

FORM_TYPE = "multipart/form-data"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "application/octet-stream")


class FormRejected(EdgetuneError):
    """A form that is malformed or is not exactly one file part (400)."""


class FormImageType(EdgetuneError):
    """The form's file part declares a content type that is not an accepted image (415)."""


class _Parts:
    """Collects the parts' headers and data from the parser's callbacks; refuses a second part."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[bytes, bytes], list[bytes]]] = []
        self.field, self.value, self.ended = bytearray(), bytearray(), False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self.field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.value.extend(d[s:e]),
            "on_header_end": self._header,
            "on_part_data": lambda d, s, e: self.parts[-1][1].append(bytes(d[s:e])),
            "on_end": self._end,
        }

    def _begin(self) -> None:
        if self.parts:
            raise FormRejected("form has more than one part; send exactly one image file")
        self.parts.append(({}, []))

    def _header(self) -> None:
        self.parts[-1][0][bytes(self.field).lower()] = bytes(self.value)
        self.field.clear()
        self.value.clear()

    def _end(self) -> None:
        self.ended = True


def image_from_form(body: bytes, content_type: str) -> bytes:
    """The one image file in a multipart/form-data body.

    Raises:
        FormRejected: no boundary, a malformed body, or not exactly one part that is a file.
        FormImageType: the file part's Content-Type is not an accepted image type.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise FormRejected(f"{FORM_TYPE} without a boundary parameter")
    found = _Parts()
    parser = MultipartParser(boundary, found.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise FormRejected(f"malformed {FORM_TYPE} body ({e})") from None
    if not found.ended or len(found.parts) != 1:
        raise FormRejected(f"{FORM_TYPE} body must hold exactly one complete part, an image file")
    headers, data = found.parts[0]
    disposition, params = parse_options_header(headers.get(b"content-disposition", b""))
    if disposition != b"form-data" or b"filename" not in params:
        raise FormRejected(
            "the part is not a file (Content-Disposition: form-data; name=...; filename=...)"
        )
    kind = parse_options_header(headers.get(b"content-type", b"application/octet-stream"))[0]
    if kind.decode("latin-1").lower() not in IMAGE_TYPES:
        raise FormImageType(
            f"form file of Content-Type {kind.decode('latin-1')[:100]!r}; send image/png, "
            "image/jpeg or image/bmp"
        )
    return b"".join(data)
