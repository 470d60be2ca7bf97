"""Token classification (`--problem_type token_classification`): a class per word of a row.

A dataset for it holds a words column (a list of strings per row: `--text_column`, else `tokens`) and a label column
holding one class per word (a `Sequence(ClassLabel)`, or lists of strings or integers), as CoNLL-2003 on the Hub does.
`TokenLabels` checks and encodes the per-word classes; `student_word_batch` tokenizes the words for the student
(`is_split_into_words=True`) and aligns the labels to its word pieces as transformers' token-classification example
does: the first sub-token of each word carries the word's class, the other sub-tokens and the special tokens -100
(ignored by the loss). It also writes `word_positions`: per token, the index of the word it starts, else -1; the
transfer term reads the student's features at those positions (one vector per word, the one the head classifies).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets

from .class_sets import class_index, class_key, class_name, trained_ids, trained_names
from .columns import arrow_column
from .errors import AFTError
from .targets import TOKEN, ClassNames, with_labels
from .text_forms import is_blank
from .tokens import within_limit

IGNORED = -100  # transformers' ignore_index: sub-tokens after a word's first, special tokens, padding
WORD_POSITIONS = "word_positions"  # per student token: the index of the word it starts, else -1
DEFAULT_WORDS_COLUMN = "tokens"
logger = logging.getLogger(__name__)


def is_word_lists(feature) -> bool:
    """Whether a column's feature is a list of strings per row (a words column)."""
    inner = getattr(feature, "feature", None)
    return isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string")


def input_column_of(dataset: datasets.Dataset, column: str) -> str:
    """`column`, or `tokens` when `column` is missing and `tokens` holds lists of words (CoNLL-style data with the
    default --text_column text)."""
    if column not in dataset.column_names and is_word_lists(dataset.features.get(DEFAULT_WORDS_COLUMN)):
        return DEFAULT_WORDS_COLUMN
    return column


def check_blank_words(dataset: datasets.Dataset, column: str, split: str) -> None:
    """Refuse a word that a tokenizer makes no token of (missing, empty, whitespace, a zero-width space, a lone
    accent: `text_forms.is_blank`) in a sentence of words: its tag would train and be scored nowhere, silently.

    Raises:
        AFTError: naming the first such word's row and position.
    """
    sentences = dataset[column]
    for row, words in enumerate(sentences):
        position = next((i for i, word in enumerate(words or ()) if is_blank(word)), None)
        if position is None:
            continue
        raise AFTError(f"the {split} split's row {row} has an empty word (word {position}) in {column!r}: a word "
                       "with no characters a tokenizer reads makes no token to carry its tag; drop such words (and "
                       "their tags).")


def not_text_advice(feature) -> str:
    """The way out of a column that holds no text where one text per row is read (`data.check_texts`)."""
    if is_word_lists(feature):  # CoNLL-style words: hf-aft features and rank-teachers read texts
        return ("word lists (with tags per word) train a token classifier: hf-aft train --text_column WORDS "
                "--label_column TAGS --teachers ... makes its teachers' per-word features itself; this reads one "
                "text per row.")
    return "choose the text column with --text_column."


def is_words_dataset(dataset: datasets.Dataset, column: str) -> bool:
    return dataset is not None and is_word_lists(dataset.features.get(column))


@dataclass
class TokenLabels(ClassNames):
    """One class per word: class names in id order; `encode` writes a `labels` column of per-word class ids (the
    student's tokenization aligns them to its word pieces, `student_word_batch`)."""

    names: list[str]
    column: str
    words_column: str
    problem_type: str = TOKEN
    is_class_label: bool = False
    trained: frozenset | None = None  # a ClassLabel's ids with training rows (its names may hold more)

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset, column: str, words_column: str) -> TokenLabels:
        """The classes of the training split, whose rows are checked now (`class_ids`), before any teacher runs."""
        inner = dataset.features[column].feature
        if isinstance(inner, datasets.ClassLabel):
            values = arrow_column(dataset, column)
            labels = cls(list(inner.names), column, words_column, is_class_label=True,
                         trained=trained_ids(values, len(inner.names)))
        else:
            names = {value for row in dataset[column] if row is not None for value in row}
            if None in names:
                raise AFTError(f"the label column {column!r} has a missing class inside a row's list: fill or drop "
                               "it.")
            labels = cls([str(v) for v in sorted(names, key=lambda v: (str(type(v)), v))], column, words_column)
        labels.class_ids(dataset)
        return labels

    def check_classes(self) -> None:
        if len(self.names) < 2:
            raise AFTError(f"the token label column {self.column!r} names {len(self.names)} class(es) "
                           f"({self.names}): a token classifier needs at least 2 (e.g. O and B-PER).")

    def class_ids(self, dataset: datasets.Dataset, split: str = "train") -> list[list[int]]:
        """Per row, the class id of each word.

        Raises:
            AFTError: a row with no words (or no list), a label list longer or shorter than its words, a class the
                training split lacks; each names the split, the row and the way out.
        """
        index = class_index(self)
        words, labels = dataset[self.words_column], dataset[self.column]
        check_blank_words(dataset, self.words_column, split)
        encoded = []
        for row, (row_words, row_labels) in enumerate(zip(words, labels, strict=True)):
            if not row_words or row_labels is None:
                raise AFTError(f"the {split} split's row {row} has no words in {self.words_column!r} (or no label "
                               f"list in {self.column!r}): drop the rows with empty word lists.")
            if len(row_labels) != len(row_words):
                raise AFTError(f"the {split} split's row {row} has {len(row_labels)} labels in {self.column!r} for "
                               f"{len(row_words)} words in {self.words_column!r}: give one class per word (or "
                               "--problem_type multi_label_classification if the column is a set of classes).")
            row_ids = []
            for value in row_labels:
                key = class_key(self, value)
                if key not in index:
                    raise AFTError(f"the {split} split's row {row} names class {class_name(self, value)!r}, which "
                                   f"the training split's {self.column!r} lacks (it has {trained_names(self)[:10]}): "
                                   "drop the row or add the class to training.")
                row_ids.append(index[key])
            encoded.append(row_ids)
        return encoded

    def check_split(self, dataset: datasets.Dataset, split: str) -> None:
        if not is_word_lists(dataset.features.get(self.words_column)):
            raise AFTError(f"the {split} split has no words column {self.words_column!r} (lists of strings), which "
                           "the training split has: give every split the same columns.")
        self.class_ids(dataset, split)

    def encode(self, dataset: datasets.Dataset, split: str = "train") -> datasets.Dataset:
        return with_labels(dataset, self.column, self.class_ids(dataset, split),
                           datasets.Sequence(datasets.Value("int64")))


def check_fast_tokenizer(tokenizer, who: str) -> None:
    """word_ids() (which sub-token belongs to which word) exists only in the Rust ("fast") tokenizers.

    Raises:
        AFTError: `tokenizer` is a slow (Python) tokenizer.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise AFTError(f"{who}'s tokenizer ({type(tokenizer).__name__}) is not a fast tokenizer, and token "
                       "classification needs its word_ids() to align words with word pieces: use a model with a "
                       "tokenizer.json (a PreTrainedTokenizerFast), or convert its tokenizer.")


def split_words(tokenizer, words: list[list[str]], max_length: int | None):
    """`tokenizer(words, is_split_into_words=True)`, truncated to `max_length`: unpadded ids, masks and per-row
    `word_ids()`. A tokenizer that needs a prefix space for pre-split words (GPT-2's, RoBERTa's) gets it."""
    options = {"add_prefix_space": True} if getattr(tokenizer, "add_prefix_space", None) is False else {}
    try:
        encoded = tokenizer(list(words), is_split_into_words=True, truncation=True,
                            max_length=within_limit(tokenizer, max_length), **options)
    except (TypeError, ValueError) as error:  # a tokenizer that cannot be given the option per call
        if not options:
            raise
        raise AFTError(f"the tokenizer {type(tokenizer).__name__} needs add_prefix_space=True for pre-split words: "
                       f"save it with that option ({error}).") from error
    return encoded, [encoded.word_ids(i) for i in range(len(words))]


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> tuple[list[int], list[int]]:
    """(per-token labels, per-token word positions) of one row: the first sub-token of word w gets `word_labels[w]`
    and position w; the rest of its sub-tokens and the special tokens get -100 and -1."""
    labels, positions, previous = [], [], None
    for word in word_ids:
        first = word is not None and word != previous
        labels.append(word_labels[word] if first else IGNORED)
        positions.append(word if first else -1)
        previous = word
    return labels, positions


def word_label_column(dataset: datasets.Dataset, words_column: str, label_column: str | None = None) -> str:
    """The column of per-word class ids a words dataset's labels are read from: `label_column`, else `labels`
    (`TokenLabels.encode` writes it). A dataset without either that has other per-word id columns (`ner_tags`) is
    refused: its labels would silently be read as none (-100 everywhere, no token in the task loss).

    Raises:
        AFTError: `label_column` missing, or per-word label columns that are not named `labels`.
    """
    if label_column is not None:
        if label_column not in dataset.column_names:
            raise AFTError(f"label_column {label_column!r} is not a column of the words dataset "
                           f"({dataset.column_names}).")
        _check_class_ids(dataset, label_column)
        return label_column
    tagged = [name for name, feature in dataset.features.items() if name not in (words_column, "labels")
              and isinstance(feature, datasets.List) and _holds_class_ids(feature.feature)]
    if "labels" not in dataset.column_names and tagged:
        raise AFTError(f"the words dataset has per-word label columns {tagged} and none named 'labels', which is "
                       f"where the student's word labels are read from: pass label_column={tagged[0]!r}, or drop "
                       "them (dataset.remove_columns) for rows without labels.")
    if "labels" in dataset.column_names:
        _check_class_ids(dataset, "labels")
    return "labels"


def _check_class_ids(dataset: datasets.Dataset, column: str) -> None:
    """Per-word labels are class ids: tag names (strings) would reach the loss as they are."""
    feature = dataset.features[column]
    if isinstance(feature, datasets.List) and not _holds_class_ids(feature.feature):
        raise AFTError(f"the per-word labels in {column!r} hold {feature.feature}, not class ids: cast them to a list "
                       f"of ClassLabel (dataset.cast_column({column!r}, datasets.List(datasets.ClassLabel(names=TAGS"
                       "))), which keeps the tag names, as hf-aft train reads them.")


def _holds_class_ids(feature) -> bool:
    return isinstance(feature, datasets.ClassLabel) or str(getattr(feature, "dtype", "")).startswith("int")


def student_word_batch(tokenizer, words_column: str, max_length: int | None, label_column: str = "labels"):
    """The batched `map` function that tokenizes a words column for the student and aligns its per-word class ids
    (`label_column`, `TokenLabels.encode`'s `labels`) to the word pieces as `labels`; see the module docstring."""

    def tokenize(batch):
        encoded, word_ids = split_words(tokenizer, batch[words_column], max_length)
        out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if "token_type_ids" in encoded:
            out["token_type_ids"] = encoded["token_type_ids"]
        unlabelled = [[IGNORED] * len(words) for words in batch[words_column]]
        word_labels = batch[label_column] if label_column in batch else unlabelled
        pairs = [align_labels(ids, row) for ids, row in zip(word_ids, word_labels, strict=True)]
        out["labels"], out[WORD_POSITIONS] = [p[0] for p in pairs], [p[1] for p in pairs]
        return out

    return tokenize



def say_cut_eval_words(eval_set, words_column: str) -> None:
    """Words past the student's --max_length have no token, so no prediction and no score: the eval scores (entity
    precision, recall, F1, word accuracy) cover the words it reads. One warning with how many are cut."""
    if eval_set is None or WORD_POSITIONS not in eval_set.column_names:
        return
    kept = [sum(position >= 0 for position in row) for row in eval_set[WORD_POSITIONS]]
    cut = [len(words) - read for words, read in zip(eval_set[words_column], kept, strict=True)]
    if sum(cut):
        logger.warning(f"hf-aft: {sum(cut):,} words of {sum(map(len, eval_set[words_column])):,} in the eval split "
                       f"({sum(1 for c in cut if c)} of {len(cut)} sentences) lie past the student's --max_length: "
                       "they are not scored (the eval scores cover the words it reads). Raise --max_length to score "
                       "them.")
