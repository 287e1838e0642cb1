"""CLIP's byte-level BPE tokenizer (as open_clip's `SimpleTokenizer` with its default 'lower' cleaning),
without open_clip, ftfy or the `regex` package.

Steps, each matching open_clip: clean the text (ftfy.fix_text, HTML-unescape twice, collapse
whitespace, lowercase), split it into pre-tokens (the special tokens, English contractions, runs of
letters, single digits/numerals, runs of other non-space characters), map each pre-token's UTF-8 bytes
to printable characters, apply the merges in rank order, and look the pieces up. A batch is
`<start_of_text> ... <end_of_text>` padded with 0 to the context length; a longer prompt is cut at the
context length and its last id replaced by `<end_of_text>`.

ftfy is optional. When it is importable it is used, so ids match open_clip exactly. Without it, a
documented subset of its default fixes runs (NFC, straight quotes, Latin ligatures, full/half-width
forms, stray control characters); what that subset cannot do is repair mojibake (text decoded with the
wrong codec, like "cafÃ©"), so only such text may tokenize differently. The pre-tokenizer classifies
characters with `unicodedata` (Python's Unicode version) where open_clip uses `regex`; the two differ
only on characters assigned in a newer Unicode version than Python's.

The merges file is any file in the format of `bpe_simple_vocab_16e6.txt(.gz)`: a header line, then one
merge per line ("a b"), best first. The real one is registered in `avbench.weights` as `clip-bpe-vocab`.
"""

from __future__ import annotations

import gzip
import html
import unicodedata
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import torch

from avbench import weights
from avbench.errors import MissingInputError, ModelConfigError

__all__ = ["VOCAB_WEIGHTS", "CLIPTokenizer", "clean_text", "load_tokenizer", "pretokenize"]

VOCAB_WEIGHTS = "clip-bpe-vocab"  # registry name in avbench.weights
SOT, EOT = "<start_of_text>", "<end_of_text>"
# open_clip reads at most this many merges: with 512 byte symbols and the 2 specials, 49,408 ids.
MAX_MERGES = 49152 - 256 - 2
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_END_OF_WORD = "</w>"


@lru_cache(maxsize=1)
def _byte_chars() -> dict[int, str]:
    """A printable character for every byte value: printable Latin-1 bytes stand for themselves,
    the others (controls, space, soft hyphen...) take code points from 256 up, in byte order. The
    dict's order is the id order of the 256 base symbols: the printable bytes first, then the rest."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    rest = [b for b in range(256) if b not in table]
    table.update((b, chr(256 + k)) for k, b in enumerate(rest))
    return table


# ---- cleaning ---------------------------------------------------------------------------------------
_QUOTES = {0x02BC: "'", **{c: "'" for c in range(0x2018, 0x201C)}, **{c: '"' for c in range(0x201C, 0x2020)}}
_LIGATURES = {
    0x0132: "IJ", 0x0133: "ij", 0x0149: "\u02bcn", 0x01F1: "DZ", 0x01F2: "Dz", 0x01F3: "dz",
    0x01C4: "D\u017d", 0x01C5: "D\u017e", 0x01C6: "d\u017e", 0x01C7: "LJ", 0x01C8: "Lj", 0x01C9: "lj",
    0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi",
    0xFB04: "ffl", 0xFB05: "\u017ft", 0xFB06: "st",
}
_CONTROLS = {c: None for c in [*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070),
                                0xFEFF, *range(0xFFF9, 0xFFFD)]}


@lru_cache(maxsize=1)
def _width_map() -> dict[int, str]:
    table = {0x3000: " "}
    for c in range(0xFF01, 0xFFF0):
        folded = unicodedata.normalize("NFKC", chr(c))
        if folded != chr(c):
            table[c] = folded
    return table


def _fix_text_subset(text: str) -> str:
    """The parts of ftfy.fix_text's defaults that need no mojibake detection, in its order."""
    if "<" not in text:  # ftfy leaves entities alone in what looks like markup
        text = html.unescape(text)
    text = text.translate(_CONTROLS)
    text = text.replace("\r\n", "\n").translate({0x0D: "\n", 0x2028: "\n", 0x2029: "\n", 0x85: "\n"})
    text = text.translate(_LIGATURES).translate(_width_map()).translate(_QUOTES)
    return unicodedata.normalize("NFC", text)


def _fix_text(text: str, use_ftfy: bool) -> str:
    if use_ftfy:
        import ftfy  # optional; checked in CLIPTokenizer.__init__

        return ftfy.fix_text(text)
    return _fix_text_subset(text)


def clean_text(text: str, use_ftfy: bool | None = None) -> str:
    """open_clip's 'lower' cleaning: fix, unescape HTML twice, collapse whitespace, lowercase."""
    if use_ftfy is None:
        use_ftfy = _have_ftfy()
    text = html.unescape(html.unescape(_fix_text(text, use_ftfy))).strip()
    return " ".join(text.split()).lower()


def _have_ftfy() -> bool:
    try:
        import ftfy  # noqa: F401
    except ImportError:
        return False
    return True


# ---- pre-tokenizing ---------------------------------------------------------------------------------
def _kind(ch: str) -> str:
    if ch.isspace():
        return " "
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else "o"


def _fold(ch: str) -> str:
    # open_clip matches contractions case-insensitively (simple case folding); the text is already
    # lowercased, and the long s is the one lowercase letter that still folds to a contraction letter.
    return "s" if ch == "\u017f" else ch


def pretokenize(text: str, specials: tuple[str, ...] = (SOT, EOT)) -> list[str]:
    """Split cleaned text the way open_clip's pattern does; at each position the first of these that
    matches wins: a special token, a contraction, a run of letters, one numeral, a run of other
    non-space characters. Spaces separate and are dropped."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        kind = _kind(ch)
        if kind == " ":
            i += 1
            continue
        special = next((s for s in specials if text.startswith(s, i)), None)
        if special is not None:
            out.append(special)
            i += len(special)
            continue
        if ch == "'":
            folded = "".join(_fold(c) for c in text[i:i + 3])
            hit = next((c for c in _CONTRACTIONS if folded.startswith(c)), None)
            if hit is not None:
                out.append(text[i:i + len(hit)])
                i += len(hit)
                continue
        if kind == "N":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < n and _kind(text[j]) == kind:
            j += 1
        out.append(text[i:j])
        i = j
    return out


# ---- the tokenizer ----------------------------------------------------------------------------------
def _read_merges(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise MissingInputError(f"{path}: no such BPE merges file; run `avbench weights fetch {VOCAB_WEIGHTS}` "
                                "or pass bpe_simple_vocab_16e6.txt.gz")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    lines = raw.decode("utf-8").split("\n")[1:MAX_MERGES + 1]  # the first line is a version header
    merges = []
    for lineno, line in enumerate(lines, start=2):
        if not line:
            continue  # open_clip would count a trailing blank line of a short file as an empty merge
        parts = line.split()
        if len(parts) != 2:
            raise ModelConfigError(f"{path}: line {lineno} is not a merge of two symbols ({line!r}); "
                                   "expected the format of bpe_simple_vocab_16e6.txt")
        merges.append((parts[0], parts[1]))
    return merges


class CLIPTokenizer:
    """Text -> [N, context_length] int64 ids, as open_clip's tokenizer for ViT-H-14 (what MMAudio uses)."""

    def __init__(self, merges_path: str | Path, context_length: int = 77, use_ftfy: bool | None = None):
        if use_ftfy and not _have_ftfy():
            raise ModelConfigError("CLIPTokenizer(use_ftfy=True): ftfy is not installed; pip install ftfy")
        self.use_ftfy = _have_ftfy() if use_ftfy is None else use_ftfy
        self.context_length = context_length
        merges = _read_merges(Path(merges_path))
        symbols = list(_byte_chars().values())
        vocab = symbols + [s + _END_OF_WORD for s in symbols] + [a + b for a, b in merges] + [SOT, EOT]
        self.encoder = {piece: i for i, piece in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.sot_token_id, self.eot_token_id = self.encoder[SOT], self.encoder[EOT]
        self.vocab_size = len(vocab)
        self._cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}
        self._to_char = _byte_chars()
        self._to_byte = {c: b for b, c in self._to_char.items()}

    def _bpe(self, token: str) -> list[str]:
        """Merge one pre-token (already mapped to byte characters): repeatedly join the adjacent pair
        with the best rank, every occurrence of it left to right, until no ranked pair remains."""
        if token in self._cache:
            return self._cache[token]
        word = [*token[:-1], token[-1] + _END_OF_WORD]
        while len(word) > 1:
            pairs = set(pairwise(word))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        """Ids of one text, without the start/end tokens and without truncation."""
        ids: list[int] = []
        for token in pretokenize(clean_text(text, self.use_ftfy)):
            mapped = "".join(self._to_char[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(mapped))
        return ids

    def decode(self, ids) -> str:
        """Text of ids (as open_clip: every piece is spelled in byte characters, end-of-word marks
        become spaces, special tokens appear as their names)."""
        chars = "".join(self.decoder[int(i)] for i in ids)
        data = bytes(self._to_byte[c] for c in chars)
        return data.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ")

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        ctx = context_length or self.context_length
        out = torch.zeros(len(texts), ctx, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > ctx:
                ids = ids[:ctx]
                ids[-1] = self.eot_token_id
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


def load_tokenizer(path: str | Path | None = None, context_length: int = 77) -> CLIPTokenizer:
    """The tokenizer with the registered vocabulary (`clip-bpe-vocab`: explicit path, $AVBENCH_CLIP_VOCAB,
    the avbench cache, else fetched once from open_clip's sdist on PyPI or a configured mirror)."""
    vocab, _ = weights.resolve(VOCAB_WEIGHTS, path)
    return CLIPTokenizer(vocab, context_length=context_length)
