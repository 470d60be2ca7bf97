"""`hf-aft push`: push a finished run's output dir (or an `hf-aft features` folder) to the Hub."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse

DESCRIPTION = """Push a trained student (weights, config, tokenizer, scales, model card) to a Hub model repo, or a
folder written by `hf-aft features` to a Hub dataset repo. The token comes from HF_TOKEN or `hf auth login`; no file
holding it is ever pushed. A push that failed can simply be run again.

  hf-aft push OUTPUT_DIR --hub_model_id ORG/NAME [--baseline_dir STL_OUT | --keep_card]

A run is pushed only as its run wrote it (`hf-aft audit OUTPUT_DIR` holds), so that the card's and audit.json's sha256
hold on the Hub; a card edited by hand needs --keep_card (push otherwise renders it again for the repo)."""


@dataclass
class PushArguments:
    output_dir: str = field(metadata={"help": "The --output_dir of an hf-aft train run (or of hf-aft features: the "
                                      "features then go to a dataset repo)."})
    hub_model_id: str = field(metadata={"help": "The Hub repo, ORG/NAME (created if needed)."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created from main if needed)."})
    commit_message: str | None = field(default=None, metadata={"help": "Message of the Hub commit."})
    baseline_dir: str | None = field(
        default=None, metadata={"help": "Output dir of a --transfer none run: its eval results go in the card."}
    )
    keep_card: bool = field(default=False, metadata={"help": "Push the card (README.md) as it is, edited by hand, "
                                                     "instead of rendering it again for the repo."})


def run(argv: list[str]) -> None:
    from ..audit import check_pushable, reseal_card
    from ..errors import AFTError
    from ..hub import check_no_token, files_to_push, push_folder, push_run
    from ..outputs import check_complete, held_outputs

    (args,) = parse((PushArguments,), argv, "hf-aft push", DESCRIPTION, first="output_dir")
    held = held_outputs(args.output_dir)
    if len(held) == 2:  # written before train and features refused each other's folder
        raise AFTError(f"{args.output_dir!r} holds both a training run ({held['run']}) and features saved by hf-aft "
                       f"features ({held['features']}): push cannot tell which to publish: move one of them into a "
                       "folder of its own (or write it again there), then push each.")
    if "features" in held:  # a folder written by hf-aft features
        url = push_folder(args.output_dir, args.hub_model_id, repo_type="dataset", private=args.private or None,
                          revision=args.revision, commit_message=args.commit_message)
        print(f"pushed the features in {args.output_dir} to the dataset repo {args.hub_model_id}: {url}")
        return
    check_complete(args.output_dir)
    if args.keep_card and args.baseline_dir:
        raise AFTError("--baseline_dir adds the baseline's results to the card, which --keep_card keeps as it is: "
                       "give one of them.")
    check_no_token(args.output_dir, files_to_push(args.output_dir))  # first: the worst a push could do
    check_pushable(args.output_dir, args.keep_card)
    url = push_run(args.output_dir, args.hub_model_id, private=args.private or None, revision=args.revision,
                   commit_message=args.commit_message, baseline_dir=args.baseline_dir, before_upload=reseal_card,
                   keep_card=args.keep_card)
    print(f"pushed {args.output_dir} to {args.hub_model_id}: {url}")
