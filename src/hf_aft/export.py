"""Edge export (`hf-aft export OUT --output_dir EXPORT [--quantize dynamic-int8]`): the student as ONNX.

The student (a PEFT adapter merged into its base first) goes through torch's own exporter, `torch.onnx.export(...,
dynamo=True)` (needs onnxscript), falling back to the TorchScript exporter (`dynamo=False`) when that fails; the report
says which ran. The ONNX model then runs in onnxruntime on the run's evaluation split and is compared with the PyTorch
student (prediction agreement, max logit difference, accuracy), with its size and CPU latency next to the PyTorch
student's (timed in turns with it, timing.py). `dynamic-int8` adds `onnxruntime.quantization.quantize_dynamic` (int8
weights) as model_int8.onnx.
EXPORT also gets the tokenizer or image processor, config.json (the label names), export_report.json and a README.md
that says how to run it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings

import numpy as np
import torch

from .errors import AFTError, first_line, missing_extra, quieted, require_extra
from .evaluation import (
    agreement,
    eval_split,
    load_run_student,
    model_inputs,
    per_word,
    predict_logits,
    problem_type_of,
    scores,
)
from .targets import MULTI, REGRESSION, SINGLE, TOKEN, is_token_model
from .timing import speeds

ONNX_NAME, INT8_NAME, EXPORT_REPORT_NAME = "model.onnx", "model_int8.onnx", "export_report.json"
QUANTIZATIONS = ("dynamic-int8",)


class _TextLogits(torch.nn.Module):
    """A text student with named tensor inputs and the logits as its one output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


class _ImageLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


def _export_options(names: list[str], dynamo: bool, token: bool = False) -> dict:
    """Dynamic batch (and sequence) axes, as each exporter wants them (a token classifier's logits: both)."""
    if not dynamo:
        axes = {name: ({0: "batch"} if name == "pixel_values" else {0: "batch", 1: "sequence"}) for name in names}
        return {"dynamic_axes": {**axes, "logits": {0: "batch", 1: "sequence"} if token
                                 else {0: "batch"}}}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {name: ({0: batch} if name == "pixel_values" else {0: batch, 1: sequence}) for name in names}
    return {"dynamic_shapes": shapes, "external_data": False, "verbose": False}


def export_onnx(model, sample: dict, path: str) -> tuple[str, str | None]:
    """Write the model as ONNX at `path` with dynamic batch (and sequence) axes; returns the exporter that worked
    (`dynamo` or `torchscript`) and, after a fallback, why dynamo failed.

    Raises:
        AFTError: neither exporter handles this architecture (one line naming both reasons).
    """
    image = "pixel_values" in sample
    text_inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    order = ["pixel_values"] if image else text_inputs
    wrapper, args = (_ImageLogits if image else _TextLogits)(model), tuple(sample[name] for name in order)
    errors = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, args, path, input_names=order, output_names=["logits"], dynamo=dynamo,
                                  **_export_options(order, dynamo, is_token_model(model)))
            return ("dynamo" if dynamo else "torchscript"), (errors[0] if errors else None)
        except Exception as error:  # any exporter failure: try the other, then say both
            missing = missing_extra(error, "hf-aft export") if isinstance(error, ImportError) else None
            if missing:  # a module of the export extra: neither exporter works without it
                raise missing from error
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(error).__name__}: {first_line(error)}")
    raise AFTError(f"cannot export this {model.config.model_type} student to ONNX ({'; '.join(errors)[:400]}).")


def onnx_batch(session, processor, batch: list, image_column: str | None, max_length: int) -> np.ndarray:
    """The ONNX model's logits [len(batch), classes] on a list of texts or images."""
    inputs = model_inputs(processor, batch, image_column, max_length, "np")
    feed = {i.name: inputs[i.name].astype(np.float32 if i.name == "pixel_values" else np.int64)
            for i in session.get_inputs()}
    logits = session.run(["logits"], feed)[0]
    return per_word(logits, processor, batch, max_length) if logits.ndim == 3 else logits  # token classification


def onnx_logits(session, processor, split, column: str, image_column: str | None, max_length: int,
                batch_size: int = 64) -> np.ndarray:
    """The ONNX model's logits [rows, classes] on `split`, batch by batch."""
    return np.concatenate([onnx_batch(session, processor, split[start : start + batch_size][column], image_column,
                                      max_length) for start in range(0, len(split), batch_size)])


def _session(path: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _row(name, path_or_bytes, logits, reference, labels, names, task=(SINGLE, 0.5)) -> dict:
    """One model's row: size, its score in the task's headline metric (accuracy, micro-F1, MSE) under that name,
    agreement with the PyTorch student (None for regression) and the largest output difference."""
    size = os.path.getsize(path_or_bytes) if isinstance(path_or_bytes, str) else path_or_bytes
    scored = scores(logits, labels, names, *task)
    row = {"model": name, "bytes": size, scored["metric"]: scored[scored["metric"]]}
    if reference is not None:
        row.update(agreement=agreement(logits, reference, *task),
                   max_logit_difference=float(np.abs(logits - reference).max()))
    return row


def export_student(folder: str, export_dir: str, quantize: str | None = None,
                   dataset_name: str | None = None) -> dict:
    """Export the student of the run in `folder` into `export_dir` and check it on the evaluation split; returns the
    report (exporter, one row per model: size, accuracy, agreement and max logit difference vs PyTorch, CPU latency
    at batch 1 in ms and throughput at batch 32).

    Raises:
        AFTError: no evaluation split, an unknown quantization, or an architecture neither exporter handles.
    """
    if quantize not in (None, *QUANTIZATIONS):
        raise AFTError(f"unknown quantize {quantize!r}: choose {', '.join(QUANTIZATIONS)} (or leave it out).")
    require_extra("export", "hf-aft export")  # torch's exporter imports onnxscript only mid-way
    split, column, image_column, max_length = eval_split(folder, dataset_name)
    model, processor = load_run_student(folder, merge_peft=True)
    limit = getattr(processor, "model_max_length", None)  # the student's position table (teach_token_limit)
    max_length = min(max_length, limit) if isinstance(limit, int) else max_length  # the README's length, as trained
    os.makedirs(export_dir, exist_ok=True)
    examples = list(split.select(range(min(32, len(split))))[column])
    sample = model_inputs(processor, examples[:2], image_column, max_length)
    exporter, fallback = export_onnx(model, sample, os.path.join(export_dir, ONNX_NAME))
    labels = split["labels"]  # per word, for token classification (scores flattens them)
    reference = predict_logits(model, processor, split, column, image_column, max_length)
    names = [str(model.config.id2label.get(i, i)) for i in range(reference.shape[1])]

    def torch_fn(batch):
        with torch.inference_mode():
            return model(**model_inputs(processor, batch, image_column, max_length)).logits

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    task = problem_type_of(model)
    rows, fns = [_row("pytorch", weights, reference, None, labels, names, task)], {"pytorch": torch_fn}
    paths = [("onnx", os.path.join(export_dir, ONNX_NAME))]
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with quieted(""):  # its advice to pre-process is for static quantization
            quantize_dynamic(paths[0][1], os.path.join(export_dir, INT8_NAME), weight_type=QuantType.QInt8)
        paths.append(("onnx dynamic-int8", os.path.join(export_dir, INT8_NAME)))
    for name, path in paths:
        session = _session(path)
        logits = onnx_logits(session, processor, split, column, image_column, max_length)
        rows.append(_row(name, path, logits, reference, labels, names, task))
        fns[name] = lambda b, s=session: onnx_batch(s, processor, b, image_column, max_length)
    timed = speeds(fns, examples)  # in turns: load from other work falls on every model alike (timing.py)
    for row in rows:
        row.update(timed[row["model"]])
    processor.save_pretrained(export_dir)
    model.config.save_pretrained(export_dir)
    report = {"exporter": exporter, "dynamo_failure": fallback, "eval_rows": len(split), "device": "cpu", "rows": rows,
              "task": "image-classification" if image_column else "token-classification" if is_token_model(model)
              else "text-classification", "problem_type": task[0], "max_length": max_length,
              "metric": scores(reference, labels, names, *task)["metric"]}
    write_export_files(export_dir, report, image_column)
    return report


def report_lines(report: dict) -> list[str]:
    """The report as a table: one row per model."""
    metric = report.get("metric", "accuracy")
    lines = [f"exported with torch.onnx.export({'dynamo=True' if report['exporter'] == 'dynamo' else 'dynamo=False'})"
             f"; checked on {report['eval_rows']} eval examples (CPU)"
             + (f" (dynamo failed: {report['dynamo_failure']})" if report.get("dynamo_failure") else ""),
             f"{'model':<20}{'size MB':>9}{metric:>10}{'agreement':>11}{'max |dlogit|':>14}{'ms/ex b1':>10}"
             f"{'ex/s b32':>10}"]
    for row in report["rows"]:
        agreed = f"{row['agreement']:.2%}" if row.get("agreement") is not None else "-"
        diff = f"{row['max_logit_difference']:.2e}" if "max_logit_difference" in row else "-"
        lines.append(f"{row['model']:<20}{row['bytes'] / 1e6:>9.2f}{row[metric]:>10.4f}{agreed:>11}{diff:>14}"
                     f"{row['latency_ms_batch1']:>10.2f}{row['throughput_batch32']:>10.0f}")
    return lines


# How the export's README example reads the ONNX logits, per problem type (config.json: the names, the threshold).
DECODE = {
    SINGLE: 'labels = json.load(open("config.json"))["id2label"]\nprint([labels[str(i)] for i in logits.argmax(-1)])',
    MULTI: 'config = json.load(open("config.json"))\nscores = 1 / (1 + np.exp(-logits))\n'
           'print([[config["id2label"][str(j)] for j, s in enumerate(row) if s >= config["decision_threshold"]]\n'
           '       for row in scores])',
    REGRESSION: 'print(logits)  # one column per target (config.json id2label), in the training data\'s units',
    TOKEN: 'labels = json.load(open("config.json"))["id2label"]  # per sub-token; the first of each word counts\n'
           'print([[labels[str(i)] for i in row] for row in logits.argmax(-1)])',
}


def write_export_files(export_dir: str, report: dict, image_column: str | None) -> None:
    """export_report.json and a README.md with how to run the model and the report's table."""
    with open(os.path.join(export_dir, EXPORT_REPORT_NAME), "w") as f:
        json.dump(report, f, indent=2)
    models = [ONNX_NAME] + ([INT8_NAME] if any("int8" in r["model"] for r in report["rows"]) else [])
    if image_column:
        prepare = ('from PIL import Image\nfrom transformers import AutoImageProcessor\n\nprocessor = '
                   'AutoImageProcessor.from_pretrained(".")\nimage = Image.open("cat.png")\nif image.mode.startswith('
                   '"I;16"):  # 16-bit pixels: scaled to 8 bits, as in training (PIL\'s convert would saturate them)\n'
                   '    image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))\n'
                   'image = image.convert("RGB")  # 8-bit RGB, as the student trained (hf_aft.images.to_rgb: '
                   'other wide modes)\n'
                   'inputs = processor(images=[image], return_tensors="np")')
    elif report["task"] == "token-classification":  # logits [batch, tokens, classes]: a class per token
        prepare = ('from transformers import AutoTokenizer\n\ntokenizer = AutoTokenizer.from_pretrained(".")\n'
                   'inputs = tokenizer([["EU", "rejects", "German", "call"]], is_split_into_words=True, '
                   f'padding=True, truncation=True, max_length={report["max_length"]}, return_tensors="np")')
    else:
        prepare = ('from transformers import AutoTokenizer\n\ntokenizer = AutoTokenizer.from_pretrained(".")\n'
                   'inputs = tokenizer(["a text to classify"], padding=True, truncation=True, '
                   f'max_length={report["max_length"]}, return_tensors="np")  # as the student trained')
    text = (f"# ONNX export of an hf-aft student\n\nFiles: {', '.join(f'`{m}`' for m in models)}, the "
            "tokenizer or image processor, `config.json` (label names), `export_report.json`.\n\n```python\n"
            f"import json\n\nimport numpy as np\nimport onnxruntime\n{prepare}\n"
            f"session = onnxruntime.InferenceSession(\"{ONNX_NAME}\")\n"
            "feed = {i.name: inputs[i.name] for i in session.get_inputs()}\nlogits = session.run([\"logits\"], feed)"
            f"[0]\n{DECODE[report.get('problem_type', SINGLE)]}\n```\n\n"
            "Checked against the PyTorch student (CPU):\n\n```\n"
            + "\n".join(report_lines(report)) + "\n```\n")
    with open(os.path.join(export_dir, "README.md"), "w") as f:
        f.write(text)
