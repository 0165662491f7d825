"""Normalisation, the first cleaning step: unicode form, control characters, whitespace, HTML to text.

The order is fixed: HTML -> text (only for .html / .htm inputs), CRLF / CR -> LF, Unicode normalisation (NFC by
default: composed characters, so "é" typed two ways hashes the same for dedup), control characters dropped
(C0 / C1 and DEL except tab and newline, plus the zero-width space and the byte-order mark), then whitespace:
runs of horizontal whitespace (tabs, no-break spaces, ...) become one space, every line is stripped and runs of
blank lines become one blank line. Stripping leading spaces loses code indentation; turn `whitespace` off for
code corpora.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

from llmfs.data.clean.config import NormalizeConfig

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_HSPACE = re.compile(r"[^\S\n]{2,}|[^\S\n ]")  # a run of whitespace other than newline, or one that is not " "
_EDGE_SPACE = re.compile(r" ?\n ?")   # after _HSPACE, a line's edges hold at most one space
_BLANK_RUNS = re.compile(r"\n{3,}")

# Tags whose content is not text, and tags that end a block (a newline in the text).
_SKIP_TAGS = {"script", "style", "head", "noscript", "template", "svg"}
_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "section",
               "article", "header", "footer", "pre", "blockquote", "hr", "title", "dd", "dt", "nav", "main"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # &amp; &#233; ... decoded in handle_data
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML page: markup removed, entities decoded, one newline per block element."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def normalize(text: str, cfg: NormalizeConfig, *, html: bool = False) -> str:
    """`text` normalised as `cfg` says; `html` marks a document read from an .html / .htm file."""
    if not cfg.enabled:
        return text
    if html and cfg.html:
        text = html_to_text(text)
    if cfg.control_chars:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.unicode != "none":
        text = unicodedata.normalize(cfg.unicode, text)
    if cfg.control_chars:
        text = _CONTROL.sub("", text)
    if cfg.whitespace:
        text = _HSPACE.sub(" ", text)
        text = _EDGE_SPACE.sub("\n", text)
        text = _BLANK_RUNS.sub("\n\n", text).strip()
    return text
