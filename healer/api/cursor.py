"""Pagination cursors that a client cannot forge: the last id of a page, signed.

A cursor is ``<id>.<signature>``, the signature a keyed BLAKE2b of the id under a server
key, 128 bits (enough against forgery; short in a URL). BLAKE2b's keyed mode is a MAC
of its own, and one call costs a fifth of an HMAC-SHA256; every page not kept checks
one cursor and signs the next. A cursor that does not
verify is a client error naming the cursor, never a query on an id the server did not
hand out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_SIG_BYTES = 16
"""128 bits of MAC: forging one takes ~2^128 tries."""
_KEY_BYTES = 64
"""The longest key BLAKE2b takes."""


class BadCursor(ValueError):
    pass


class CursorSigner:
    def __init__(self, key: bytes) -> None:
        # BLAKE2b takes a key of at most 64 bytes: a longer one is hashed to 64 first.
        self._key = key if len(key) <= _KEY_BYTES else hashlib.blake2b(key).digest()

    def _sign(self, last_id: int) -> str:
        message = f"incidents:{last_id}".encode()
        mac = hashlib.blake2b(message, key=self._key, digest_size=_SIG_BYTES).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def dump(self, last_id: int) -> str:
        return f"{last_id}.{self._sign(last_id)}"

    def load(self, cursor: str) -> int:
        """The id in ``cursor``; BadCursor when it was not made by this key."""
        head, _, signature = cursor.partition(".")
        if (
            not (cursor.isascii() and head.isdigit()) or len(head) > 19
        ):  # 19 digits: the largest 64-bit id
            raise BadCursor("not a cursor this server issued")
        if not hmac.compare_digest(signature, self._sign(int(head))):
            raise BadCursor("signature does not match: the cursor was altered or is stale")
        return int(head)
