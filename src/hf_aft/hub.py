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

import os
from contextlib import contextmanager
from pathlib import Path

from .card import CARD_INPUTS_NAME, CARD_NAME, read_baseline, read_card_inputs, write_model_card
from .errors import AFTError, first_line
from .hub_reach import unreachable_now
from .outputs import COMPLETE_NAME, SCALES_PLOT_NAME

IGNORE_PATTERNS = ["checkpoint-*", "runs/*", "training_args.bin", ".*", "_*", COMPLETE_NAME]
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


def check_run_dir(output_dir: str) -> None:
    """The output dir of a finished run: config and weights are there."""
    if not os.path.isdir(output_dir):
        raise AFTError(f"output dir {output_dir!r} does not exist: give the --output_dir of an hf-aft train run.")
    names = os.listdir(output_dir)
    has_config = "config.json" in names or "adapter_config.json" in names
    has_weights = any(n.endswith(_WEIGHTS) and n != "training_args.bin" for n in names)
    if not (has_config and has_weights):
        raise AFTError(f"{output_dir!r} holds no saved student (config.json and weights): give the --output_dir of "
                       "a finished hf-aft train run.")


def _check_repo_id(repo_id: str | None) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id:
        raise AFTError("pushing needs --hub_model_id ORG/NAME (the Hub repo to create or update).")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise AFTError(f"--hub_model_id {repo_id!r} is not a valid repo id ({first_line(error)}); use ORG/NAME."
                       ) from error


def push_folder(folder: str, repo_id: str, *, repo_type: str = "model", token: str | None = None,
                private: bool | None = None, revision: str | None = None, commit_message: str | None = None) -> str:
    """The one upload path: push `folder` as it is to the Hub repo `repo_id` (created if needed; `revision` is a
    branch, created from main if needed), never a file listed in IGNORE_PATTERNS nor one holding the token in use.
    Returns the commit URL; any failure is one AFTError line naming the `hf-aft push` command that finishes the
    job."""
    from huggingface_hub import HfApi

    _check_repo_id(repo_id)
    check_no_token(folder, files_to_push(folder), token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type=repo_type, revision=revision,
                                 ignore_patterns=list(IGNORE_PATTERNS), commit_message=commit_message or
                                 ("Upload student trained with hf-aft" if repo_type == "model" else
                                  "Teacher features by hf-aft"))
    except Exception as error:  # HTTP errors, refused connections, timeouts, offline mode: all end the same way
        again = f"hf-aft push {folder} --hub_model_id {repo_id}" + (f" --revision {revision}" if revision else "")
        raise _push_failed(error, repo_id, folder, again) from error
    return info.commit_url


@contextmanager
def _card_restored_on_failure(output_dir: str):
    """The card is rendered again for the repo before a push; if the push fails, the run's card files are put back
    byte for byte (nothing was published, so nothing in the run changes)."""
    names = (CARD_NAME, CARD_INPUTS_NAME, SCALES_PLOT_NAME, "audit.json")
    paths = {name: Path(output_dir, name) for name in names}
    saved = {name: path.read_bytes() for name, path in paths.items() if path.exists()}
    try:
        yield
    except BaseException:
        for name, path in paths.items():
            if name in saved:
                path.write_bytes(saved[name])
            else:
                path.unlink(missing_ok=True)
        raise


def push_run(output_dir: str, repo_id: str | None, *, token: str | None = None, private: bool | None = None,
             revision: str | None = None, commit_message: str | None = None, baseline_dir: str | None = None,
             before_upload=None, keep_card: bool = False) -> str:
    """Push a run's output dir to the Hub model repo `repo_id`. The card is rendered again first (unless
    `keep_card`), for this repo id and with the baseline's results when `baseline_dir` is given, then
    `before_upload(output_dir)` runs (hf-aft hashes the card into audit.json); a failed push leaves the output dir as
    it was. Returns the commit URL."""
    _check_repo_id(repo_id)
    check_run_dir(output_dir)
    if not os.access(output_dir, os.W_OK):  # said as a full disk otherwise
        raise AFTError(f"{output_dir!r} is read-only: push writes the card for the repo, and its sha256 in "
                       "audit.json, into the run before uploading. Copy the run somewhere writable (cp -r) and push "
                       "the copy.")
    facts = None if keep_card else read_card_inputs(output_dir)
    if facts is None and baseline_dir:
        raise AFTError(f"{output_dir!r} has no model_card.json to add the baseline to: it was not written by hf-aft.")
    with _card_restored_on_failure(output_dir):
        if facts is not None:  # a card written by hf-aft: render it again for this repo (and baseline)
            facts["repo_id"] = repo_id
            if baseline_dir:
                facts["baseline_results"] = read_baseline(baseline_dir, facts.get("dataset_name"))
            write_model_card(output_dir, **facts)
        if before_upload is not None:
            before_upload(output_dir)
        return push_folder(output_dir, repo_id, token=token, private=private, revision=revision,
                           commit_message=commit_message)


def _push_failed(error: Exception, repo_id: str, folder: str, again: str) -> AFTError:
    reason = f"{type(error).__name__}: {first_line(error)}"
    status = getattr(getattr(error, "response", None), "status_code", None)
    gone = unreachable_now() if status is None else None  # no answer at all: say so, not the client's error class
    if gone:
        return AFTError(f"push to {repo_id!r} failed: the Hub is unreachable ({gone}). {folder!r} is complete; run "
                        f"`{again}` where the Hub can be reached.")
    login = " with a token that can write there (HF_TOKEN or `hf auth login`)" if status in (401, 403) else ""
    return AFTError(f"push to {repo_id!r} failed ({reason}). {folder!r} is complete; run `{again}`{login} to try "
                    "again.")
