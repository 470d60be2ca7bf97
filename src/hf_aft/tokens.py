"""Tokenizing texts for a model, teacher or student, so that every row holds at least one real token.

A tokenizer that adds no special tokens (GPT-2's, or a LLaMA-style one without BOS) turns "" (or, for some, only
whitespace) into no tokens at all. Such a row's attention mask is all zero: alone or in a batch of its kind (as a
length sort gathers them) the model gets a batch of width 0 and crashes; mixed with longer texts it is pooled from
padding, so its features depend on its batch. Here it gets one stand-in token instead (eos: GPT-2's document
boundary; else bos, unk or pad), which makes its features those of that token, the same in any batch.
"""

from __future__ import annotations

import numpy as np
import torch

from .columns import arrow_column
from .errors import AFTError, warn_once

UNKNOWN_SHARE = 0.5  # beyond this share of unknown tokens the student cannot read the texts


def stand_in_token(tokenizer) -> int:
    """The token an empty text becomes: eos, else bos, unk or pad."""
    for token_id in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return token_id
    raise AFTError("the tokenizer has no eos, bos, unk or pad token to stand for an empty text: add one.")


def fill_empty(encoded, tokenizer):
    """`encoded` (a batch from `tokenizer(texts)`, unpadded) with each row of no tokens given the stand-in token."""
    empty = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) == 0]
    if empty:
        token = stand_in_token(tokenizer)
        for key in list(encoded.keys()):
            value = [token] if key == "input_ids" else [1] if key in ("attention_mask", "special_tokens_mask") else [0]
            for i in empty:
                encoded[key][i] = value
    return encoded


def within_limit(tokenizer, max_length: int | None) -> int | None:
    """`max_length`, but no more than the tokenizer's `model_max_length` when that is a real limit (hf-aft sets it
    from the model's position table when it loads a model): an explicit max_length above it (a run's --max_length
    in evaluation, export or the cost report) would otherwise pass the model more positions than it has."""
    limit = getattr(tokenizer, "model_max_length", None)
    if max_length is not None and isinstance(limit, int) and 0 < limit < max_length:
        return limit
    return max_length


def encode(tokenizer, texts, max_length: int | None):
    """Unpadded token ids and masks of `texts`, truncated to `max_length` (at most the model's limit), no row
    empty."""
    encoded = tokenizer(list(texts), truncation=True, max_length=within_limit(tokenizer, max_length))
    return fill_empty(encoded, tokenizer)


def encode_padded(tokenizer, texts, max_length: int | None, return_tensors: str = "pt"):
    """`encode`, padded into one batch of tensors: the model inputs of a list of texts."""
    return tokenizer.pad(encode(tokenizer, texts, max_length), return_tensors=return_tensors)


def check_room(tokenizer, max_length: int | None, model: str, flag: str) -> None:
    """A `max_length` that leaves no room for text beside the special tokens the tokenizer adds is refused: the
    tokenizer would then not truncate at all (it says so and returns every token), or keep only those tokens."""
    special = tokenizer.num_special_tokens_to_add(pair=False)
    if max_length is not None and max_length <= special:
        raise AFTError(f"{model}: {flag} {max_length} leaves no room for text: its tokenizer adds {special} special "
                       f"tokens to every text, so {flag} must be at least {special + 1}.")


def pad_rows(tokenizer, ids: list[list[int]], masks: list[list[int]]) -> dict[str, torch.Tensor]:
    """What `tokenizer.pad({"input_ids": ids, "attention_mask": masks}, return_tensors="pt")` returns: int64 tensors
    [rows, longest row], padded with the tokenizer's pad token on its padding side, filled through numpy.
    `tokenizer.pad` walks Python lists (about 60 us a row: a quarter of a teacher pass on a GPU, bench/gpu.py)."""
    width = max(map(len, ids))
    input_ids = np.full((len(ids), width), tokenizer.pad_token_id, dtype=np.int64)
    attention = np.zeros((len(ids), width), dtype=np.int64)
    left = tokenizer.padding_side == "left"
    for row, (tokens, mask) in enumerate(zip(ids, masks, strict=True)):
        span = slice(width - len(tokens), width) if left else slice(0, len(tokens))
        input_ids[row, span] = tokens
        attention[row, span] = mask
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention)}


def warn_unknown_tokens(dataset, tokenizer, logger) -> None:
    """A student tokenizer that reads most of the training texts' tokens (`input_ids`, special tokens aside) as its
    unknown token (texts in another alphabet or language than its vocabulary's) gets one warning: every text then
    looks alike to the student, which learns little, and the transfer term compares rows that differ by rounding."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None or dataset is None or "input_ids" not in dataset.column_names or not len(dataset):
        return
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pc.list_flatten(arrow_column(dataset, "input_ids"))
    special = pa.array(sorted(set(tokenizer.all_special_ids) - {unknown}), type=ids.type)
    read = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=special)))
    share = pc.mean(pc.equal(read, unknown).cast("float64")).as_py() if len(read) else 0.0
    if share > UNKNOWN_SHARE:
        warn_once(logger, f"hf-aft: the student's tokenizer reads {share:.0%} of the training texts' tokens as its "
                          f"unknown token {tokenizer.unk_token!r}: it does not know their words (another language "
                          "or alphabet?), and the student learns little; choose a student made for this text.")


def check_vocabulary(tokenizer, config, who: str) -> None:
    """Refuse a tokenizer that does not fit the model's vocabulary (`config.vocab_size`): under half of it is what
    transformers builds for a folder that holds a model but no tokenizer files (what `model.save_pretrained(dir)`
    alone writes), a handful of special tokens, so every word reaches the model as its unknown token and its
    features (or its predictions) only see each text's length; over it, token ids index past the model's embedding
    table. A larger table than the tokenizer (rounded up to a multiple of 64 or 128, as many models do) is fine.
    `who`: e.g. "teacher 'DIR'".

    Raises:
        AFTError: the tokenizer is that small, or larger than the vocabulary.
    """
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab_size, size = getattr(text_config, "vocab_size", None), len(tokenizer)
    if not isinstance(vocab_size, int) or vocab_size // 2 <= size <= vocab_size:
        return
    said = f"{who}: its tokenizer knows {size:,} token{'' if size == 1 else 's'} and its model {vocab_size:,}"
    if size > vocab_size:
        raise AFTError(f"{said}: token ids from {vocab_size:,} up would index past the model's embeddings. Give the "
                       "model's own tokenizer (or resize its embeddings, model.resize_token_embeddings).")
    raise AFTError(f"{said}: most words would read as the unknown token (a folder without tokenizer files of its "
                   "own, tokenizer.json, vocab.txt, ..., or another model's tokenizer). Save the model's own "
                   "tokenizer beside it (tokenizer.save_pretrained(DIR)).")
