"""MiniLM's WordPiece tokenizer, shared by the chunker (to count tokens) and the local
embedder (to encode). Loaded once per process, from the file the package carries."""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer

TOKENIZER_FILE = Path(__file__).with_name("assets") / "minilm-tokenizer.json"
# The model reads at most 256 wordpieces, [CLS] and [SEP] included.
MODEL_WINDOW = 256
SPECIAL_TOKENS = 2
MAX_CHUNK_TOKENS = MODEL_WINDOW - SPECIAL_TOKENS


@functools.cache
def minilm_tokenizer() -> Tokenizer:
    """The tokenizer with its built-in truncation and padding (to 128) turned off: with
    them, every count would stop at 128 and short texts would count as 128."""
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    """Wordpieces in `text`, without the special tokens."""
    return len(minilm_tokenizer().encode(text, add_special_tokens=False).ids)
