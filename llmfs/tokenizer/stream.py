"""Streaming decode: ids arrive one at a time (generation), text leaves only at complete UTF-8 characters.

A multi-byte character (an emoji is 4 bytes) is often split over two or more byte-level tokens; decoding each
token alone would print U+FFFD halves. The decoder keeps the incomplete tail bytes until the character completes.
Invalid bytes become U+FFFD exactly as in `decode` (Python's incremental UTF-8 decoder applies the same
replacement rule as the one-shot decoder), so for any ids `"".join(feed(i) for i in ids) + flush() ==
decode(ids)`.
"""

from __future__ import annotations

import codecs


class StreamingDecoder:
    """`d = StreamingDecoder(tok); for i in ids: print(d.feed(i), end=""); print(d.flush())`."""

    def __init__(self, tokenizer):
        self._token_bytes = tokenizer.token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """The text completed by this id ("" while a character is still incomplete)."""
        return self._utf8.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        """The end of the stream: a dangling incomplete character becomes U+FFFD."""
        out = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return out
