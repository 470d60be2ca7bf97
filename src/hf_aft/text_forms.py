"""Texts as a model reads them, for comparing texts across splits (leakage, duplicates) and for telling a text or
word that no tokenizer makes a token of."""

from __future__ import annotations

import unicodedata


def normalised_text(text: str | None) -> str | None:
    """The text as an uncased tokenizer reads it (BERT's BasicTokenizer): Unicode NFKD without accents and format
    characters (a zero-width space), casefolded, whitespace collapsed and stripped, so that "Great  movie ",
    "GREAT MOVIE" and "grëat movie" are one text."""
    if text is None:
        return None
    kept = (c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) not in ("Mn", "Cf"))
    return " ".join("".join(kept).casefold().split())


def is_blank(text: str | None) -> bool:
    """Missing, or nothing a tokenizer reads once `normalised_text` drops accents and format characters: empty,
    whitespace, a zero-width space, control characters, a lone combining accent."""
    return not any(c.isprintable() for c in normalised_text(text or ""))
