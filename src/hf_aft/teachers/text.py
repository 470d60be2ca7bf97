"""A frozen text teacher: its own tokenizer, batches of similar length, pooled token states -> one vector per text."""

from __future__ import annotations

import gc

import numpy as np
import torch

from ..errors import AFTError, missing_extra, one_line
from ..tokens import check_room, check_vocabulary, encode, pad_rows, stand_in_token
from .backends import onnx_teacher_model
from .loading import cap_max_length, default_pooling, file_options, intended_load_report, load_config, token_limit
from .pooling import pool
from .spec import hub_revision

MAP_BATCH_SIZE = 1024  # rows per `Dataset.map` batch unless a text teacher's length sort needs more (below)


class TextTeacher:
    """A frozen text teacher, loaded on first use only, so that a cache hit never loads it. `options` go to
    `from_pretrained` (dtype, device_map, gguf_file, trust_remote_code: see loading.py); `column` is the column it
    reads; `label` is what its provenance records (the folder or Hub id, or the GGUF file)."""

    modality = "text"
    group_by_length = True
    backend = "torch"  # or onnxruntime / onnxruntime-int8 (backends.py), exported under `export_root`
    export_root = None

    def __init__(self, spec: str, name: str, revision: str, pooling: str, max_length: int, batch_size: int, device,
                 options: dict | None = None, column: str = "text"):
        self.spec, self.name, self.revision = spec, name, revision
        self.pooling, self.max_length, self.batch_size, self.device = pooling, max_length, batch_size, device
        self.options, self.column = dict(options or {}), column
        self.label = name
        self.model = self.tokenizer = None
        self.forward_passes = 0
        self.unused_pad = False  # load: a decoder classifier padded with an id no text holds

    @property
    def map_batch_size(self) -> int:
        """Rows per `Dataset.map` batch by default: 1,024, and for a text teacher that sorts by length at least 8
        teacher batches, since the sort runs within a map batch: a teacher batch as large as the map batch is padded
        to its longest text (on an H200, mpnet extracted at 0.53x sentence-transformers' speed so; benchmarks.md)."""
        sorts = self.modality == "text" and self.group_by_length
        return max(MAP_BATCH_SIZE, 8 * self.batch_size) if sorts else MAP_BATCH_SIZE

    def load(self) -> None:
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        auto_class = AutoModelForSequenceClassification if self.pooling == "logits" else AutoModel
        # A Hub teacher loads at its resolved commit sha, the revision its features are recorded with.
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.name, revision=hub_revision(self.revision),
                                                           **file_options(self.options))
            with intended_load_report():  # a classifier checkpoint loads as its backbone: its head is not needed
                self.model = auto_class.from_pretrained(self.name, revision=hub_revision(self.revision),
                                                        **self.options)
        except Exception as error:
            if isinstance(error, ImportError) and (extra := missing_extra(error, f"teacher {self.spec!r}")):
                raise extra from error
            raise AFTError(f"could not load teacher {self.spec!r}: {one_line(error)}") from error
        role = "--distill_teacher" if self.pooling == "logits" else "teacher"  # a task teacher's logits
        check_vocabulary(self.tokenizer, self.model.config, f"{role} {self.spec!r}")
        if self.tokenizer.pad_token is None:  # decoder tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.tokenizer.pad_token is None:
            raise AFTError(f"{role} {self.spec!r}: its tokenizer has no pad, eos or unk token to pad batches with: "
                           "give a tokenizer that has one (save it with pad_token set).")
        self.unused_pad = self.pooling == "logits" and getattr(self.model.config, "pad_token_id", None) is None
        if self.unused_pad:
            # A decoder classifier (GPT-2, LLaMA) reads each row's last token through config.pad_token_id, and
            # without one refuses batches of more than one text: the pad token, which right padding puts after it.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        # Pad on the right whatever the tokenizer says: a decoder's real tokens then keep positions 0..n-1 and never
        # see padding (causal attention), so its features don't depend on the batch; `pool` excludes the padding.
        self.tokenizer.padding_side = "right"
        limit = token_limit(self.model.config, self.tokenizer)  # the position table too: a teacher built directly
        self.max_length = cap_max_length(f"teacher {self.spec!r}", self.max_length, limit, "--teacher_max_length")
        check_room(self.tokenizer, self.max_length, f"teacher {self.spec!r}", "--teacher_max_length")
        if self.pooling == "auto":
            self.pooling = default_pooling(self.model.config)
        if "device_map" not in self.options:  # with a device map, accelerate has placed the layers already
            self.model.to(self.device)
        self.model.eval().requires_grad_(False)

    def resolved_pooling(self, config=None) -> str:
        if self.pooling == "auto":
            return default_pooling(config if config is not None else
                                   load_config(self.spec, self.name, self.revision, self.options))
        return self.pooling

    @torch.inference_mode()
    def __call__(self, texts: list[str], rows: list[int] | None = None) -> np.ndarray:
        if self.model is None:
            self.load()
        # No row is empty (tokens.py): a length sort would gather empty texts into a batch of width 0.
        encoded = encode(self.tokenizer, texts, self.max_length)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        if self.backend != "torch" and isinstance(self.model, torch.nn.Module):
            self.model = onnx_teacher_model(self, self._probes(ids, masks))  # the eager model is dropped
        # Batch texts of similar length together (less padding); results go back in the original order.
        order = np.argsort([len(x) for x in ids], kind="stable") if self.group_by_length else np.arange(len(ids))
        pooled = []
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            padded = pad_rows(self.tokenizer, [ids[i] for i in chunk], [masks[i] for i in chunk])
            if self.unused_pad and isinstance(self.model, torch.nn.Module):
                padded = pad_with_unused_id(padded, self.model)
            batch = {name: tensor.to(self.model.device) for name, tensor in padded.items()}
            # Stays on the device: no host round trip (and no synchronisation) per batch on an accelerator.
            pooled.append(pool(self.model(**batch), batch["attention_mask"], self.pooling))
            self.forward_passes += 1
        out = np.empty((len(order), pooled[0].shape[1]), dtype=np.float32)
        out[order] = torch.cat(pooled).float().cpu().numpy()  # one copy to the host per block, in dataset order
        return out

    def _probes(self, ids: list, masks: list) -> list[dict]:
        """Padded batches to export the teacher with and check its ONNX features on: a fixed 2 x 8 example (an
        exported dimension that is 1 in the example would be frozen at 1), up to 8 of these texts spread over their
        lengths, and the longest alone (no padding)."""
        token = stand_in_token(self.tokenizer)
        example = {"input_ids": torch.full((2, 8), token), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
        example["attention_mask"][1, 5:] = 0
        order = np.argsort([len(x) for x in ids], kind="stable")
        spread = order[np.linspace(0, len(order) - 1, min(8, len(order))).astype(int)]
        batches = [spread, order[-1:]]
        return [example] + [pad_rows(self.tokenizer, [ids[i] for i in rows], [masks[i] for i in rows])
                            for rows in batches]

    def free(self) -> None:
        """Drop the teacher. On an accelerator, also hand its memory back (gc.collect costs ~0.3 s of CPU per
        teacher, measured in bench/peers.py, and only matters for device memory)."""
        on_accelerator = self.model is not None and self.model.device.type != "cpu"
        self.model = self.tokenizer = None
        if on_accelerator:
            gc.collect()
            torch.cuda.empty_cache()


def pad_with_unused_id(padded: dict, model) -> dict:
    """`padded` with its padding set to a token id no text of the batch holds, and the model's config.pad_token_id
    set to it: a decoder classifier takes each row's last token that is not config.pad_token_id, so padding with eos
    made a tokenizer's real final eos count as padding and read the token before it. Right padding and causal
    attention keep the padding's ids out of every real token's result."""
    ids, mask = padded["input_ids"], padded["attention_mask"].bool()
    present = torch.zeros(model.get_input_embeddings().num_embeddings, dtype=torch.bool)
    present[ids[mask]] = True
    unused = (~present).nonzero()
    if not len(unused):  # every id of the vocabulary in one batch: keep the tokenizer's padding
        return padded
    model.config.pad_token_id = int(unused[0])
    return {**padded, "input_ids": ids.masked_fill(~mask, int(unused[0]))}
