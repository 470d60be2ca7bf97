"""Generated texts: unlabelled rows written by a small language model prompted with the labelled texts (not in the
paper).

With few labelled texts and no unlabelled ones, distillation has little to say beyond the labels: the transfer set is
the bottleneck. GAL (He et al., 2022, "Generate, Annotate, and Learn: NLP with Synthetic Text", TACL) fills it with
texts a language model writes in the task's domain, each annotated by the teacher. hf-aft prompts a causal language
model (`--generator`: a Hub id, a folder or a GGUF file, as teachers are named) with `SHOTS` labelled texts drawn at
random, as a list, and keeps the first line it writes next:

    Examples:
    - <labelled text>
    - ... (SHOTS of them)
    -

Each prompt is continued `SAMPLES_PER_PROMPT` times from its prefix computed once (1.5 times as many texts a second on
2 CPU threads; `bench/generation_speed.py`). Its labels play no part: a generated text's distillation target is what
the teachers' probe says of it. A text shorter than `MIN_WORDS` words, or equal to a labelled text, an eval text or
another generated one, is left out. The texts are cached (keyed by the generator's revision, the labelled and eval
texts, the count, the seed and these settings), so a rerun does not generate them again, and the `--beta auto`
candidates, which share one training part, generate once. While they are written, the texts so far are kept after
each batch in a progress file beside the cache: an interrupted run goes on from them. Each batch draws its prompts
and samples from a random state of its own (the seed and the batch's number), so a run that went on writes the same
texts as one that did not. A prompt longer than the generator's context loses its start.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from datasets.fingerprint import Hasher

from . import faults
from .augmentation import check_source_column, text_rows
from .cache import default_cache_dir, main_process_first, store_or_warn, verify
from .errors import AFTError, missing_extra, one_line
from .filesystems import write_atomically
from .provenance import current_revision, teacher_source
from .teachers.loading import token_limit
from .teachers.spec import GGUF_SEPARATOR, hub_revision, is_path_like, parse_teacher, teacher_label
from .text_forms import normalised_text
from .tokens import check_vocabulary

logger = logging.getLogger(__name__)

HEADER, SHOTS, BATCH, MAX_NEW_TOKENS, MIN_WORDS = "Examples:\n", 4, 32, 48, 4
TOP_P, TEMPERATURE = 0.95, 1.0
# Continuations sampled from one prompt. Its prefix (the examples) is computed once and shared: on CPU that prefix is
# a third to a half of a batch's work. Each text is still a sample given SHOTS labelled texts drawn at random.
SAMPLES_PER_PROMPT = 4
GENERATION_VERSION = 4  # bump when the prompt, the sampling or the filter changes: cached texts are then made again
MAX_ROUNDS_WITHOUT_TEXT = 3  # batches in a row that add no text before the generator is given up on


def generated_texts(generator: str, texts: Sequence[str], count: int, seed: int = 0, held_out: Sequence[str] = (),
                    cache_dir: str | os.PathLike | None = None) -> tuple[list[str], str]:
    """`count` texts written by the causal language model `generator` (module docstring), and the revision they were
    made with (a Hub commit sha, or a content hash for a local folder or GGUF file). Cached in `cache_dir` (default:
    beside the teacher features); deterministic in `seed` on one machine.

    Raises:
        AFTError: a generator that cannot be loaded or is not a causal language model, or one that writes no usable
            text.
    """
    name, _, gguf_file = teacher_source(generator)
    revision, config = resolve_generator(generator)
    key = Hasher.hash([GENERATION_VERSION, teacher_label(generator), revision, list(texts), sorted(held_out), count,
                       seed, HEADER, SHOTS, MAX_NEW_TOKENS, MIN_WORDS, TOP_P, TEMPERATURE, SAMPLES_PER_PROMPT])
    path = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"generated-{key}.json"
    with main_process_first():
        if verify(path):
            return json.loads(path.read_text())["texts"], revision
        model, tokenizer = load_generator(generator, name, revision, gguf_file)
        progress = path.with_name(f"generated-{key}.progress.json")
        made = generate(model, tokenizer, texts, count, seed, held_out, prompt_room(generator, config, tokenizer),
                        progress)
        _store(path, made, generator, revision)
        progress.unlink(missing_ok=True)
    return made, revision


def resolve_generator(generator: str):
    """(revision, config) of a generator: the revision it resolves to now, as a teacher's
    (`hf_aft.provenance.current_revision`), and its config (no weights loaded).

    Raises:
        AFTError: no such local folder or file, a Hub id (or revision) that neither the Hub nor its local cache has,
            or a model that is not a causal language model (an image model, a masked language model such as BERT).
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    local = parse_teacher(generator.split(GGUF_SEPARATOR)[0])[0]  # a folder@revision: resolve_revision refuses it
    if is_path_like(str(generator)) and not os.path.exists(local):
        raise AFTError(f"generator {generator!r}: no such folder or file. Give a causal language model's folder, a "
                       ".gguf file (or FOLDER::FILE.gguf), or a Hub id (org/name).")
    revision = current_revision(generator, "generator")
    name, _, gguf_file = teacher_source(generator)
    try:
        config = AutoConfig.from_pretrained(name, revision=hub_revision(revision),
                                            **({"gguf_file": gguf_file} if gguf_file else {}))
    except Exception as error:
        raise AFTError(f"could not load generator {generator!r}: {one_line(error)}") from error
    kind = getattr(config, "model_type", None)
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        what = "a masked language model: it fills in words, it does not write text" if (
            kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES) else "not a text generator"
        raise AFTError(f"generator {generator!r} is a {kind!r} model, {what}. Pass a causal language model (such as "
                       "HuggingFaceTB/SmolLM2-135M-Instruct), or --generate_texts 0.")
    return revision, config


def prompt_room(generator: str, config, tokenizer) -> int | None:
    """The most prompt tokens a generator takes: its context (`token_limit`) less the `MAX_NEW_TOKENS` it writes;
    None when its config sets no limit.

    Raises:
        AFTError: a context too short to hold a prompt of a few words and the new tokens.
    """
    limit = token_limit(config, tokenizer)
    if limit is None:
        return None
    if limit - MAX_NEW_TOKENS < 32:
        raise AFTError(f"generator {generator!r} takes {limit} tokens, too few for a prompt and the {MAX_NEW_TOKENS} "
                       "tokens it writes: pass a generator with a longer context, or --generate_texts 0.")
    return limit - MAX_NEW_TOKENS


def check_generation(train_dataset, config, text_column: str = "text", image_column: str | None = None) -> None:
    """Refuse, before any teacher runs, a `config.generate_texts` run that cannot generate.

    Raises:
        AFTError: images (a generator writes texts), word lists, no such text column, or a generator that cannot be
            resolved or is not a causal language model (`resolve_generator`).
    """
    if not config.generate_texts:
        return
    if image_column is not None:
        raise AFTError("--generate_texts writes texts, and this run's data are images: pass --generate_texts 0 "
                       "(--augment_copies makes copies of images).")
    check_source_column(train_dataset, text_column, None, "--generate_texts")
    resolve_generator(config.generator)


def generated_rows(train_dataset, config, tokenizer, text_column: str = "text", image_column: str | None = None,
                   held_out: Sequence[str] = ()):
    """`config.generate_texts` texts from `config.generator`, prompted with the labelled texts of `train_dataset`
    (none equal to a text of `held_out`), as unlabelled rows (`augmentation.text_rows`), and the generator's
    revision.

    Raises:
        AFTError: see `check_generation` and `generated_texts`; tokens needed without a tokenizer.
    """
    check_generation(train_dataset, config, text_column, image_column)
    texts, revision = generated_texts(config.generator, [str(t) for t in train_dataset[text_column]],
                                      config.generate_texts, config.seed, held_out)
    if len(texts) < config.generate_texts:
        logger.warning("hf-aft: the generator wrote %d usable texts of the %d asked for.", len(texts),
                       config.generate_texts)
    return text_rows(texts, train_dataset, tokenizer, text_column, "generate_texts"), revision


def load_generator(spec: str, name: str, revision: str, gguf_file: str | None = None):
    """(model, tokenizer) of a causal language model, the tokenizer padding on the left (a batch of prompts then
    ends where generation starts)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=hub_revision(revision), **options)
        model = AutoModelForCausalLM.from_pretrained(name, revision=hub_revision(revision), **options).eval()
    except Exception as error:
        if isinstance(error, ImportError) and (extra := missing_extra(error, f"generator {spec!r}")):
            raise extra from error
        raise AFTError(f"could not load generator {spec!r} as a causal language model (a text generator such as "
                       f"HuggingFaceTB/SmolLM2-135M-Instruct): {one_line(error)}") from error
    check_vocabulary(tokenizer, model.config, f"generator {spec!r}")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer


def generate(model, tokenizer, texts: Sequence[str], count: int, seed: int = 0, held_out: Sequence[str] = (),
             room: int | None = None, progress: Path | None = None) -> list[str]:
    """Up to `count` new texts from `model` prompted with `SHOTS` of `texts` at a time (module docstring), each
    prompt cut from the left to `room` tokens (the generator's context less what it writes), going on from and
    kept in the `progress` file (JSON) when one is given. The caller's torch random state is left as it was, so a
    cached rerun trains exactly as the first run.

    Raises:
        AFTError: no usable text in `MAX_ROUNDS_WITHOUT_TEXT` batches in a row.
    """
    import torch

    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seen = {normalised_text(t) for t in (*texts, *held_out)}  # as the pool's leakage check compares texts
        made = _sample_texts(model, tokenizer, list(texts), count, seed, seen, room, progress)
    if not made:
        raise AFTError(f"the generator wrote no text of {MIN_WORDS} or more words unlike the labelled ones in "
                       f"{MAX_ROUNDS_WITHOUT_TEXT * BATCH} tries: pass a generator that writes text in your data's "
                       "language, or --generate_texts 0.")
    return made


def _sample_texts(model, tokenizer, texts: list[str], count: int, seed: int, seen: set[str], room: int | None,
                  progress: Path | None = None) -> list[str]:
    import torch
    from datasets.utils import tqdm  # a progress bar that datasets.disable_progress_bars() turns off too

    made, batch, idle = _progress_so_far(progress)
    seen.update(map(normalised_text, made))
    shots, ends = min(SHOTS, len(texts)), line_ends(tokenizer)
    with tqdm(total=count, initial=len(made), desc="Generating texts", unit=" texts") as bar, \
            _say_progress(made, count, progress):
        while len(made) < count and idle < MAX_ROUNDS_WITHOUT_TEXT:
            rng = random.Random(f"{seed}/{batch}")  # the batch's own state: a run that goes on draws the same
            torch.manual_seed(rng.getrandbits(63))
            prompts = [HEADER + "".join(f"- {one_line_text(t)}\n" for t in rng.sample(texts, shots)) + "-"
                       for _ in range(BATCH // SAMPLES_PER_PROMPT)]
            before = len(made)
            for text in _continue(model, tokenizer, prompts, room, ends, SAMPLES_PER_PROMPT):
                if len(text.split()) >= MIN_WORDS and normalised_text(text) not in seen and len(made) < count:
                    seen.add(normalised_text(text))
                    made.append(text)
            idle, batch = (0 if len(made) > before else idle + 1), batch + 1
            progress = _keep_progress(progress, made, batch, idle)
            bar.update(len(made) - before)
    return made


def _progress_so_far(progress: Path | None) -> tuple[list[str], int, int]:
    """(texts, batches done, batches in a row without a text) of an interrupted run's progress file; none yet, or
    one that cannot be read (a warning), is a start from nothing."""
    if progress is None or not progress.exists():
        return [], 0, 0
    try:
        state = json.loads(progress.read_text())
        made, batches, idle = [str(t) for t in state["texts"]], int(state["batches"]), int(state["idle"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("hf-aft: the generated texts' progress file %s cannot be read (%s): generating from the "
                       "start.", progress, one_line(error))
        return [], 0, 0
    logger.warning("hf-aft: going on from the %d generated texts an interrupted run kept in %s.", len(made),
                   progress.parent)
    return made, batches, idle


def _keep_progress(progress: Path | None, made: list[str], batches: int, idle: int) -> Path | None:
    """Write the texts so far to the progress file (renamed into place: never half a file); a cache that cannot
    take it (read-only, full) means an interrupt loses them: a warning, and None (no more tries)."""
    if progress is None:
        return None
    try:
        progress.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(progress, json.dumps({"texts": made, "batches": batches, "idle": idle}))
        return progress
    except OSError as error:
        logger.warning("hf-aft: the generated texts cannot be kept as they are written in %s (%s): an interrupt "
                       "loses them.", progress.parent, error.strerror or error)
        return None


@contextlib.contextmanager
def _say_progress(made: list[str], count: int, progress: Path | None):
    """An interrupt while writing: the interrupt line says what became of the texts written so far, kept in the
    progress file (a rerun goes on from them) or, where none could be written, not kept."""
    try:
        yield
    except KeyboardInterrupt:
        what = f"the {len(made):,} of {count:,} generated texts written so far"
        if progress is not None and progress.exists():
            faults.kept.append(f"{what} in {progress.parent} (a rerun goes on from them)")
        else:
            faults.lost.append(f"{what} (a rerun writes them again)")
        raise


def _continue(model, tokenizer, prompts: list[str], room: int | None, ends: list[int], samples: int = 1,
              sample: bool = True) -> list[str]:
    """The first line of each of `samples` continuations of each prompt (prompt by prompt), decoding stopped at a
    token of `ends` (`line_ends`); sampled, or greedy with `sample=False`. A prompt longer than `room` tokens loses
    its start (the list item to continue is at its end)."""
    import torch

    tokenizer.truncation_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, truncation=room is not None,
                      max_length=room).to(model.device)
    options = {"max_new_tokens": MAX_NEW_TOKENS, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": ends,
               "do_sample": sample, **({"top_p": TOP_P, "temperature": TEMPERATURE} if sample else {})}
    with torch.no_grad():
        out = _generate_shared(model, batch["input_ids"], batch["attention_mask"], samples, options)
    written = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return [text.strip().split("\n")[0].strip() for text in written]


def _generate_shared(model, ids, mask, samples: int, options: dict):
    """`model.generate` of `samples` continuations per row of `ids` [prompts, tokens], rows repeated in place, the
    prompts' cache computed once (by `generate` itself, so positions and masks are the model's own) and repeated. A
    model whose cache cannot be cut and repeated computes each copy's prompt again (slower, the same sampling)."""
    repeated = {"input_ids": ids.repeat_interleave(samples, 0), "attention_mask": mask.repeat_interleave(samples, 0)}
    if samples > 1 and ids.shape[1] > 1:
        try:
            first = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, do_sample=False,
                                   pad_token_id=options["pad_token_id"], return_dict_in_generate=True)
            cache = getattr(first, "cache", None) or first.past_key_values
            cache.crop(-1)  # drop the last prompt token: generate computes it (a negative crop removes tokens)
            cache.batch_repeat_interleave(samples)
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            cache = None
        if cache is not None:
            name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
            return model.generate(**repeated, **{name: cache}, **options)
    return model.generate(**repeated, **options)


def line_ends(tokenizer) -> list[int]:
    """The token ids that end a line (a newline in them) or the text (eos): a sequence stops at the first. Used
    instead of `generate(stop_strings=...)`, whose vocabulary scan fails on some tokenizers (word-level ones)."""
    vocabulary = len(tokenizer)
    decoded = tokenizer.batch_decode([[i] for i in range(vocabulary)])
    ends = [i for i, text in enumerate(decoded) if "\n" in text]
    return ends + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def one_line_text(text: str) -> str:
    """A labelled text as one list item of the prompt (its line breaks would end the item)."""
    return " ".join(str(text).split())


def _store(path: Path, texts: list[str], generator: str, revision: str) -> None:
    """Cache the texts (a temporary file renamed into place, with its checksum); a cache that cannot take them only
    means the next run generates them again: a warning."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.json")
    content = json.dumps({"generator": generator, "revision": revision, "texts": texts})
    store_or_warn(path, tmp, lambda file: file.write_text(content), "the generated texts were",
                  "the next run generates them again.")
