"""`hf-aft export RUN --output_dir EXPORT [--quantize dynamic-int8]`: the student as ONNX, checked on the eval split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .parsing import parse

DESCRIPTION = """Export a trained student to ONNX with torch's exporter (dynamo, falling back to TorchScript), run it
with onnxruntime on the run's evaluation split and compare it with the PyTorch student (prediction agreement, max
logit difference, accuracy, size, CPU latency). A LoRA student is merged into its base first. EXPORT gets model.onnx
(and model_int8.onnx with --quantize dynamic-int8), the tokenizer or image processor, config.json, export_report.json
and a README.md saying how to run it.

  hf-aft export OUT --output_dir EXPORT [--quantize dynamic-int8] [--dataset_name DATA]"""


@dataclass
class ExportArguments:
    run: str = field(metadata={"help": "The output dir of an hf-aft train run, or its Hub model id."})
    output_dir: str = field(metadata={"help": "Where the ONNX model and its files go (a new or empty folder)."})
    quantize: str | None = field(
        default=None, metadata={"help": "dynamic-int8: also write model_int8.onnx (onnxruntime quantize_dynamic).",
                                "choices": ["dynamic-int8"]}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "The dataset to check on (default: the one in the run's recipe)."}
    )


def run(argv: list[str]) -> None:
    from ..claims import claimed
    from ..errors import AFTError, require_extra
    from ..evaluation import run_folder
    from ..export import export_student, report_lines
    from ..outputs import check_complete, check_output_dir

    (args,) = parse((ExportArguments,), argv, "hf-aft export", DESCRIPTION, first="run")
    require_extra("export", "hf-aft export")  # before anything loads: torch imports onnxscript only mid-export
    check_output_dir(args.output_dir)
    folder, from_hub = run_folder(args.run)
    if not from_hub:  # as hf-aft push: a run that stopped early is no student to ship (the Hub has no marker)
        check_complete(folder)
    run, target = os.path.realpath(folder), os.path.realpath(args.output_dir)  # a link to the run is the run
    if os.path.commonpath([run, target]) == run:
        raise AFTError(f"--output_dir {args.output_dir!r} is inside the run {args.run!r}: `hf-aft audit` would find "
                       "its files added to the run, and `hf-aft push` would upload them. Export beside the run.")
    with claimed(args.output_dir, "export"):
        report = export_student(folder, args.output_dir, args.quantize, args.dataset_name)
    _print(*report_lines(report), f"exported to {args.output_dir}")


def _print(*lines: str) -> None:
    print("\n".join(lines))  # sys.stdout as it is now (tests capture it)
