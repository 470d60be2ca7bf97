"""`hf-aft student`: make a small student from a pretrained model by keeping its first N layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse

DESCRIPTION = """Make a small student: keep the first --num_layers layers of a pretrained text model (a teacher, say),
with its embeddings and tokenizer (DistilBERT-style initialisation; image models are not supported). `hf-aft train
--model_name_or_path OUTPUT_DIR` adds the classification head sized from your labels.

  hf-aft student --from sentence-transformers/all-MiniLM-L6-v2 --num_layers 3 --output_dir student-3l"""


@dataclass
class StudentArguments:
    source: str = field(metadata={"help": "The pretrained model to cut: a Hub id or a local folder.",
                                  "aliases": ["--from"]})
    num_layers: int = field(metadata={"help": "How many of its first layers to keep."})
    output_dir: str = field(metadata={"help": "Where the student goes (a new or empty folder)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow an output_dir that holds files."})


def run(argv: list[str]) -> None:
    from ..claims import claimed
    from ..outputs import check_output_dir
    from ..student_init import save_truncated_student
    from ..teachers.content_hash import check_model_weights

    (args,) = parse((StudentArguments,), argv, "hf-aft student", DESCRIPTION, shown_as={"source": "--from"})
    check_output_dir(args.output_dir, args.overwrite_output_dir, inputs={"--from": args.source}, writes="run")
    check_model_weights(args.source, f"the student's source --from {args.source!r}")
    with claimed(args.output_dir, "student"):
        save_truncated_student(args.source, args.output_dir, args.num_layers, overwrite=True)  # checked above
    print(f"student with the first {args.num_layers} layers of {args.source} saved to {args.output_dir}")
