"""Table Storage keys built only from characters the service allows.

PartitionKey and RowKey may not hold ``/ \\ # ?`` or control characters and are limited to 1 KiB.
Parts are percent-encoded (reversibly) and joined with ``|``, which is itself encoded inside a part.
"""

from __future__ import annotations

import hashlib
import re

SEPARATOR = "|"
_MAX_KEY_CHARS = 512  # 1 KiB of UTF-16
_ENCODE = {c: f"%{ord(c):02X}" for c in "/\\#?%|"}


def _encode_char(char: str) -> str:
    if char in _ENCODE:
        return _ENCODE[char]
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"%{code:02X}"
    return char


# Characters a part keeps as they are: printable ASCII but ``/ \\ # ? % |`` (a GUID's ``-`` included, so an id is
# checked by one C call rather than character by character).
_PLAIN = re.compile(r"[ !\"$&'()*+,\-.0-9:;<=>@A-Z\[\]^_`a-z{}~]*")


def encode_part(value: str) -> str:
    """One key part with every disallowed character (and ``%``, ``|``) percent-encoded."""
    if _PLAIN.fullmatch(value):
        return value
    return "".join(_encode_char(c) for c in value)


def make_key(*parts: str) -> str:
    """A key from parts; over-long keys keep a readable prefix and end in a hash of the whole."""
    key = SEPARATOR.join(encode_part(p) for p in parts)
    if len(key) > _MAX_KEY_CHARS:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        key = key[: _MAX_KEY_CHARS - 33] + "~" + digest
    return key


def digest(*parts: str, length: int = 20) -> str:
    """A short stable hash of parts, for identities made of long or free-form values."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))  # a lone surrogate still hashes, stably
        h.update(b"\x00")
    return h.hexdigest()[:length]


def under(*parts: str) -> tuple[str, str]:
    """The key range ``[low, high)`` of every key that starts with these parts and goes on (``{parts}|...``).

    ``}`` is the character after the separator ``|``, and a part never holds a raw ``|``."""
    prefix = make_key(*parts)
    return prefix + SEPARATOR, prefix + "}"
