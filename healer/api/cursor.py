"""Pagination cursors that a client cannot forge: the last id of a page, signed.

A cursor is ``<id>.<signature>``, the signature an HMAC-SHA256 of the id under a server
key, cut to 128 bits (enough against forgery; short in a URL). A cursor that does not
verify is a client error naming the cursor, never a query on an id the server did not
hand out.
"""

from __future__ import annotations

import base64
import hmac

_SIG_BYTES = 16
"""128 bits of HMAC: forging one takes ~2^128 tries."""


class BadCursor(ValueError):
    pass


class CursorSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, last_id: int) -> str:
        mac = hmac.digest(self._key, f"incidents:{last_id}".encode(), "sha256")  # one C call
        return base64.urlsafe_b64encode(mac[:_SIG_BYTES]).rstrip(b"=").decode()

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
