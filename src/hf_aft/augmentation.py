"""Augmented copies of the labelled examples: unlabelled rows made from the labelled ones (not in the paper).

Without unlabelled data, probe distillation on the labelled rows only says again what their labels say. Tang et al.
(2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", section 3.2) and TinyBERT (Jiao et
al., 2020) distil on perturbed copies of the labelled texts instead, each labelled by the teacher. hf-aft makes
`copies` perturbed copies of every labelled example:

- a text: each word is dropped with probability `DROP`, or replaced with probability `REPLACE` by a word drawn from
  the labelled texts' words (a word of the same data: Tang et al.'s POS-guided replacement without a tagger), and
  with probability `CROP` the copy is cut to a contiguous span of at least half its words (their n-gram sampling,
  with longer spans). A copy that equals a labelled text or another copy is left out.
- an image: a random crop of `IMAGE_SCALE` of its area, resized back, flipped left-right half the time and rotated by
  up to `ROTATE` degrees (the usual training augmentations of image classifiers).

The copies join the run as unlabelled rows (unlabeled.py): the teachers' features are made for them by the one
feature path, and the probe fitted on all labelled rows gives their distillation targets. A copy need not keep its
original's label (a flipped digit, a text that lost its one negative word): its target is what the teacher's probe
says of the copy itself.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import datasets

from .errors import AFTError, warn_once
from .images import to_rgb
from .text_forms import normalised_text
from .tokens import encode

logger = logging.getLogger(__name__)

DROP, REPLACE, CROP = 0.1, 0.1, 0.25  # Tang et al.'s p_mask and p_ng (0.1, 0.25); a dropped word for their [MASK]
IMAGE_SCALE, ROTATE = (0.6, 1.0), 15.0


def augment_texts(texts: Sequence[str], copies: int, seed: int = 0, held_out: Sequence[str] = ()) -> list[str]:
    """Up to `copies * len(texts)` perturbed copies of `texts` (module docstring), copy-major, deterministic in
    `seed`, none empty, none equal to a text of `texts`, of `held_out` (the eval split's: no leak) or to another
    copy, as the pool's leakage check compares texts (`text_forms.normalised_text`: case, width, spacing)."""
    rng = random.Random(seed)
    vocabulary = sorted({word for text in texts for word in text.split()})
    seen, out = {normalised_text(t) for t in (*texts, *held_out)}, []  # as the pool's leakage check compares texts
    for _ in range(copies):
        for text in texts:
            copy = _perturb(text.split(), vocabulary, rng)
            if copy and normalised_text(copy) not in seen:
                seen.add(normalised_text(copy))
                out.append(copy)
    return out


def _perturb(words: list[str], vocabulary: list[str], rng: random.Random) -> str:
    kept = []
    for word in words:
        draw = rng.random()
        if draw >= DROP:
            kept.append(rng.choice(vocabulary) if draw < DROP + REPLACE else word)
    if len(kept) > 3 and rng.random() < CROP:
        length = rng.randint(max(2, len(kept) // 2), len(kept))
        start = rng.randint(0, len(kept) - length)
        kept = kept[start:start + length]
    return " ".join(kept)


def augment_images(images: Sequence, copies: int, seed: int = 0, column: str = "image") -> list:
    """`copies * len(images)` perturbed copies (module docstring) as PIL RGB images, copy-major (copy `p` is of
    image `p % len(images)`), deterministic in `seed`; `images` as an image column holds them (PIL images, arrays,
    file paths)."""
    originals = [to_rgb(image, column, row) for row, image in enumerate(images)]
    return [augment_image(originals[p % len(originals)], seed, p) for p in range(copies * len(originals))]


def augment_image(image, seed: int, position: int):
    """Copy number `position` of a PIL image: the same `(seed, position)` gives the same copy in any process."""
    from PIL import Image

    rng = random.Random(f"{seed}-{position}")
    width, height = image.size
    scale = rng.uniform(*IMAGE_SCALE) ** 0.5  # of the side, for that share of the area
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    copy = image.crop((left, top, left + w, top + h)).resize((width, height), Image.BILINEAR)
    if rng.random() < 0.5:
        copy = copy.transpose(Image.FLIP_LEFT_RIGHT)
    return copy.rotate(rng.uniform(-ROTATE, ROTATE), resample=Image.BILINEAR)


def check_copies(train_dataset: datasets.Dataset, copies: int, text_column: str = "text",
                 image_column: str | None = None) -> None:
    """Refuse, before any teacher runs, labelled rows that `augmented_rows` cannot copy.

    Raises:
        AFTError: an image column that is not a datasets `Image` column (paths, arrays), a column of word lists
            (token classification), no such text column, or texts too short for any copy to differ from them.
    """
    if not copies:
        return
    check_source_column(train_dataset, text_column, image_column, "--augment_copies")
    if image_column is None and not augment_texts([str(t) for t in train_dataset[text_column]], copies):
        raise AFTError("--augment_copies made no copy that differs from the labelled texts (each is too short): "
                       "pass --augment_copies 0.")


def check_source_column(train_dataset: datasets.Dataset, text_column: str, image_column: str | None,
                  option: str) -> None:
    """The column that `option` makes rows from holds images of a datasets `Image` column, or texts.

    Raises:
        AFTError: an image column that is not a datasets `Image` column, word lists, or no such text column.
    """
    if image_column is not None:
        feature = train_dataset.features.get(image_column)
        if not isinstance(feature, datasets.Image):
            raise AFTError(f"{option} copies images of a datasets Image column, and {image_column!r} holds "
                           f"{feature}: give the images as an image folder or a save_to_disk dataset with an Image "
                           f"column (dataset.cast_column({image_column!r}, datasets.Image())), or pass "
                           f"{option} 0.")
        return
    feature = train_dataset.features.get(text_column)
    if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string"):
        reads = "texts or images" if option == "--augment_copies" else "texts"
        raise AFTError(f"{option} reads {reads}, and {text_column!r} holds {feature} (token "
                       f"classification's word lists get none): pass {option} 0, or --unlabeled_dataset with rows of "
                       "your own.")
    if feature is None:
        raise AFTError(f"{option} reads the texts of {text_column!r}, which the training data lacks "
                       f"({train_dataset.column_names}): pass the text column (--text_column), or {option} 0.")


def augmented_rows(train_dataset: datasets.Dataset, copies: int, seed: int, tokenizer, text_column: str = "text",
                   image_column: str | None = None, held_out: Sequence[str] = ()) -> datasets.Dataset:
    """The augmented copies of the labelled rows' images (`image_column`) or texts (`text_column`; none equal to a
    text of `held_out`) as unlabelled rows (`text_rows`).

    Raises:
        AFTError: what `check_made_rows` refuses, or tokens without a tokenizer.
    """
    check_source_column(train_dataset, text_column, image_column, "--augment_copies")
    if image_column is not None:
        return _image_copies(train_dataset.select_columns([image_column]), copies, seed, image_column)
    texts = augment_texts([str(t) for t in train_dataset[text_column]], copies, seed, held_out)
    if not texts:
        raise AFTError("--augment_copies made no copy that differs from the labelled texts (each is too short) and "
                       "the eval texts: pass --augment_copies 0.")
    dropped = copies * len(train_dataset) - len(texts)
    if dropped:  # short texts have few distinct copies: the user asked for more rows than the run trains on
        warn_once(logger, f"hf-aft: --augment_copies {copies} made {len(texts):,} of {copies * len(train_dataset):,} "
                       f"copies: {dropped:,} equalled a labelled or eval text, or another copy, and were dropped.")
    return text_rows(texts, train_dataset, tokenizer, text_column, "augment_copies")


def text_rows(texts: list[str], train_dataset: datasets.Dataset, tokenizer, text_column: str,
              option: str) -> datasets.Dataset:
    """Texts made from the labelled ones as unlabelled rows: the column `text_column`, and the student's tokens
    (`input_ids`, `attention_mask`...) when the labelled rows have them, truncated to the longest labelled row (a
    made text is a reworded or imitated labelled text, so that length is what `--max_length` allowed them).

    Raises:
        AFTError: tokens needed without a tokenizer.
    """
    rows = datasets.Dataset.from_dict({text_column: texts})
    if "input_ids" not in train_dataset.column_names:
        return rows
    if tokenizer is None:
        raise AFTError(f"{option} needs the student's tokenizer to tokenize its texts: pass processing_class= to "
                       "AFTTrainer.")
    longest = max(len(ids) for ids in train_dataset["input_ids"])
    return rows.map(lambda batch: encode(tokenizer, batch[text_column], longest), batched=True,
                    desc=f"Tokenizing the texts of {option}")


def held_out_texts(eval_dataset, text_column: str) -> list[str]:
    """The texts of an eval dataset (or a dict of them, as `Trainer` takes), which no copy may equal."""
    sets = list(eval_dataset.values()) if isinstance(eval_dataset, dict) else [eval_dataset]
    return [str(t) for d in sets if text_column in getattr(d, "column_names", ()) for t in d[text_column]]


def _image_copies(images: datasets.Dataset, copies: int, seed: int, column: str) -> datasets.Dataset:
    """The copies written batch by batch (Dataset.map), so that K copies of many images never sit in memory."""
    n = len(images)

    def make(batch, positions):
        return {column: [augment_image(to_rgb(images[p % n][column], column, p % n), seed, p) for p in positions]}

    return datasets.Dataset.from_dict({"position": list(range(copies * n))}).map(
        make, with_indices=True, batched=True, batch_size=64, remove_columns=["position"],
        features=datasets.Features({column: datasets.Image()}), desc="Augmented copies of the images")


def join_unlabeled(*parts: datasets.Dataset | None) -> datasets.Dataset | None:
    """The given unlabelled rows followed by the made ones (augmented copies, generated texts), on the columns of the
    last part given (a pool's other columns are not read by training); None when no part is given."""
    parts = [part for part in parts if part is not None]
    if len(parts) < 2:
        return parts[0] if parts else None
    info = parts[0].info.description  # the teachers' provenance
    columns = parts[-1].column_names
    features = parts[0].select_columns(columns).features
    joined = datasets.concatenate_datasets([part.select_columns(columns).cast(features) for part in parts])
    joined.info.description = info
    return joined
