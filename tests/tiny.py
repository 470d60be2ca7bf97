"""Tiny random-weight models and datasets built in code: the tests need no Hub and no downloads."""

from __future__ import annotations

from pathlib import Path

import datasets
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

WORDS = ("good great fine fun love best bad awful dull boring worst hate movie film plot actor story the a is "
         "was not very really quite").split()
POSITIVE, NEGATIVE = WORDS[:6], WORDS[6:12]


def make_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))


def bert_config(hidden: int = 16, layers: int = 1, **kwargs) -> BertConfig:
    vocab_size = len(WORDS) + 5
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=2 * hidden, max_position_embeddings=64, **kwargs)


def save_teacher(folder: Path, hidden: int = 12, seed: int = 0) -> Path:
    """A tiny BertModel teacher with its tokenizer, saved like a Hub snapshot."""
    import torch

    torch.manual_seed(seed)
    BertModel(bert_config(hidden)).save_pretrained(folder)
    make_tokenizer(folder).save_pretrained(folder)
    return folder


def save_student(folder: Path, hidden: int = 16, num_labels: int = 2, seed: int = 0, dtype=None) -> Path:
    """A tiny BERT classifier without dropout; `dtype=torch.float64` makes float noise negligible in comparisons."""
    import torch

    torch.manual_seed(seed)
    config = bert_config(hidden, num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).to(dtype or torch.float32).save_pretrained(folder)
    make_tokenizer(folder).save_pretrained(folder)
    return folder


def sentiment_dataset(n: int = 48, seed: int = 0) -> datasets.Dataset:
    """Short texts whose label is whether they use positive words: learnable in a few steps."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.sample(POSITIVE if label else NEGATIVE, 2) + rng.sample(WORDS[12:], rng.randint(1, 4))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return datasets.Dataset.from_dict({"text": texts, "label": labels})
