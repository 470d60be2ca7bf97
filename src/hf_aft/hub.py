"""Publishing a student: `hf-aft push OUTPUT_DIR --hub_model_id ORG/NAME`, also what `hf-aft train --push_to_hub` and
`AFTTrainer.push_to_hub` run.

What goes up is the output dir of a run: weights, config, tokenizer or image processor, `transfer_state.safetensors`
(the learned scales), `transfer_summary.json`, the results JSON files, `model_card.json`, the card `README.md` and
`scales.png`. What never goes up: `checkpoint-*` folders, `runs/` logs, hidden files and `training_args.bin` (the
pickled TrainingArguments, which hold `hub_token`). Before anything is sent every file is searched for the Hub token
in use; one that contains it stops the push. A push that fails leaves the output dir complete, and running the same
`hf-aft push` again finishes the job.
"""

from __future__ import annotations

import argparse
import os

from .card import read_baseline, read_card_inputs, write_model_card
from .errors import AFTError

IGNORE_PATTERNS = ["checkpoint-*", "runs/*", "training_args.bin", ".*", "_*"]
_WEIGHTS = (".safetensors", ".bin")


def files_to_push(output_dir: str) -> list[str]:
    """The paths (relative, as in the repo) that `push_folder` uploads, filtered exactly as `upload_folder` does."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    paths = sorted(os.path.relpath(os.path.join(root, name), output_dir).replace(os.sep, "/")
                   for root, _, names in os.walk(output_dir) for name in names)
    return list(filter_repo_objects(paths, ignore_patterns=IGNORE_PATTERNS + list(DEFAULT_IGNORE_PATTERNS)))


def _known_tokens(token: str | None) -> set[str]:
    from huggingface_hub import get_token

    candidates = {token, get_token(), os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    return {t for t in candidates if isinstance(t, str) and len(t) >= 8}


def check_no_token(output_dir: str, paths: list[str], token: str | None = None) -> None:
    """Refuse to push a file that contains a Hub token (searched in blocks that overlap by the token's length)."""
    for secret in _known_tokens(token):
        needle = secret.encode()
        for path in paths:
            with open(os.path.join(output_dir, path), "rb") as f:
                tail = b""
                for block in iter(lambda f=f: f.read(1 << 24), b""):
                    if needle in tail + block:
                        raise AFTError(f"refusing to push: {path!r} in {output_dir!r} contains your Hub token. Delete "
                                       "or clean that file, then push again (nothing was sent).")
                    tail = block[-(len(needle) - 1):]


def _check_output_dir(output_dir: str) -> None:
    if not os.path.isdir(output_dir):
        raise AFTError(f"output dir {output_dir!r} does not exist: give the --output_dir of an hf-aft train run.")
    names = os.listdir(output_dir)
    has_config = "config.json" in names or "adapter_config.json" in names
    has_weights = any(n.endswith(_WEIGHTS) and n != "training_args.bin" for n in names)
    if not (has_config and has_weights):
        raise AFTError(f"{output_dir!r} holds no saved student (config.json and weights): give the --output_dir of "
                       "a finished hf-aft train run.")


def push_folder(output_dir: str, repo_id: str | None, *, token: str | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str | None = None,
                baseline_dir: str | None = None) -> str:
    """Push a run's output dir to the Hub model repo `repo_id` (created if needed; `revision` is a branch, created
    from main if needed). The card is rendered again first, for this repo id and with the baseline's results when
    `baseline_dir` is given. Returns the commit URL; any failure is one AFTError line."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id:
        raise AFTError("pushing needs --hub_model_id ORG/NAME (the Hub repo to create or update).")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise AFTError(f"--hub_model_id {repo_id!r} is not a valid repo id ({error}); use ORG/NAME.") from None
    _check_output_dir(output_dir)
    inputs = read_card_inputs(output_dir)
    if inputs is not None:  # a card written by hf-aft: render it again for this repo (and baseline)
        inputs["repo_id"] = repo_id
        if baseline_dir:
            inputs["baseline_results"] = read_baseline(baseline_dir, inputs.get("dataset_name"))
        write_model_card(output_dir, **inputs)
    elif baseline_dir:
        raise AFTError(f"{output_dir!r} has no model_card.json to add the baseline to: it was not written by hf-aft.")
    paths = files_to_push(output_dir)
    check_no_token(output_dir, paths, token)

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=output_dir, revision=revision,
                                 ignore_patterns=list(IGNORE_PATTERNS),
                                 commit_message=commit_message or "Upload student trained with hf-aft")
    except Exception as error:  # HTTP errors, refused connections, timeouts, offline mode: all end the same way
        again = f"hf-aft push {output_dir} --hub_model_id {repo_id}" + (f" --revision {revision}" if revision else "")
        raise _push_failed(error, repo_id, output_dir, again) from None
    return info.commit_url


def _push_failed(error: Exception, repo_id: str, folder: str, again: str) -> AFTError:
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    status = getattr(getattr(error, "response", None), "status_code", None)
    login = " with a token that can write there (HF_TOKEN or `hf auth login`)" if status in (401, 403) else ""
    return AFTError(f"push to {repo_id!r} failed ({reason}). {folder!r} is complete; run `{again}`{login} to try "
                    "again.")


def push_dataset_folder(folder: str, repo_id: str, *, private: bool | None = None) -> str:
    """Push a `save_to_disk` folder (as written by `hf-aft features`) to the Hub dataset repo `repo_id`, as is:
    `hf-aft train --dataset_name ORG/NAME` downloads it and loads it with its provenance. Returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise AFTError(f"--hub_model_id {repo_id!r} is not a valid repo id ({error}); use ORG/NAME.") from None
    check_no_token(folder, files_to_push(folder))
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset",
                                 ignore_patterns=list(IGNORE_PATTERNS), commit_message="Teacher features by hf-aft")
    except Exception as error:
        raise _push_failed(error, repo_id, folder, f"hf-aft push {folder} --hub_model_id {repo_id}") from None
    return info.commit_url


def run_push(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-aft push", description="Push a trained student (weights, config, tokenizer, scales, model card) to "
        "the Hub. The token comes from HF_TOKEN or `hf auth login`.")
    parser.add_argument("output_dir", help="the --output_dir of an hf-aft train run (or of hf-aft features: the "
                        "features then go to a dataset repo)")
    parser.add_argument("--hub_model_id", required=True, help="the Hub repo, ORG/NAME (created if needed)")
    parser.add_argument("--private", action="store_true", default=None, help="create the repo private")
    parser.add_argument("--revision", help="branch to push to (created from main if needed); default main")
    parser.add_argument("--commit_message", help="message of the Hub commit")
    parser.add_argument("--baseline_dir", help="output dir of a --transfer none run: its eval results go in the card")
    args = parser.parse_args(argv)
    if os.path.exists(os.path.join(args.output_dir, "dataset_dict.json")):  # a folder written by hf-aft features
        url = push_dataset_folder(args.output_dir, args.hub_model_id, private=args.private)
        print(f"pushed the features in {args.output_dir} to the dataset repo {args.hub_model_id}: {url}")
        return
    url = push_folder(args.output_dir, args.hub_model_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message, baseline_dir=args.baseline_dir)
    print(f"pushed {args.output_dir} to {args.hub_model_id}: {url}")
