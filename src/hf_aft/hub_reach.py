"""Working offline when the Hub cannot be reached at all. Before the first Hub id of a process is read (a dataset, a
student, a teacher), one TCP connection to the Hub's endpoint (`HF_ENDPOINT`) is tried; when it fails (no name
resolution, no route, refused, no answer in `PROBE_TIMEOUT_S`), the process switches to the Hub libraries' own
offline mode (`HF_HUB_OFFLINE`), so cached copies load at once and missing ones are refused at once. Without it a
Hub id read on an air-gapped machine waits out huggingface_hub's retries (30-50 s, a warning line each) before the
cached copy or the refusal comes. Skipped when offline mode is already on, or a proxy carries the Hub's traffic
(the client reaches the Hub through it, and a direct connection says nothing)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import urllib.parse
import urllib.request

from .errors import AFTError, warn_once

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 3.0


@functools.cache
def unreachable_because() -> str | None:
    """Why the Hub's endpoint takes no connection (`host:port: reason`), or None: it does, offline mode is already
    on, or a proxy is configured for it. Asked once per process."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    if url.hostname is None or (urllib.request.getproxies().get(url.scheme)
                                and not urllib.request.proxy_bypass(url.hostname)):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__  # socket.timeout has no strerror
        return f"{url.hostname}:{port}: {reason}"
    return None


def offline_if_unreachable(name: str | None = None) -> None:
    """Switch this process (and the processes it starts) to the Hub's offline mode when its endpoint takes no
    connection. Call before reading a name that may be a Hub id: a `name` that is a local path asks nothing."""
    if name is not None and os.path.exists(name):
        return
    reason = unreachable_because()
    if reason is None:
        return
    import datasets
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub and transformers (is_offline_mode)
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    logger.info("the Hub is unreachable (%s): Hub ids are read from the local cache only (HF_HUB_OFFLINE=1 "
                "skips this check)", reason)


def note_cached(what: str) -> None:
    """Say once that `what` (e.g. "student org/name") came from the local cache because the Hub is unreachable: a
    cached copy may be older than the Hub's (`hf-aft check-updates` compares them once it is reachable). Said on
    success only: a refusal names the unreachable Hub itself (`hub_answer`)."""
    reason = unreachable_because()
    if reason:
        warn_once(logger, f"hf-aft: {what} read from the local cache: the Hub is unreachable ({reason}).")


def hub_answer(said: str) -> str:
    """What to say the Hub answered when reading a Hub id failed (`said`: the error's one line): that the Hub is
    unreachable and the local cache has no copy, when this process found it so (the offline-mode error would tell
    the user to unset a variable they never set), else `said`."""
    reason = unreachable_because()
    return f"the Hub is unreachable ({reason}) and the local cache has no copy" if reason else said


def _why_not_asked() -> tuple[str | None, str | None]:
    """(why this process cannot ask the Hub, the unreachable endpoint's reason): (None, None) when it can; offline
    mode is switched on first when the endpoint takes no connection."""
    from huggingface_hub import constants

    offline_if_unreachable()
    if not constants.HF_HUB_OFFLINE:
        return None, None
    reason = unreachable_because()
    return (f"the Hub is unreachable ({reason})" if reason else "offline mode is on (HF_HUB_OFFLINE)"), reason


def check_hub_reachable(what: str) -> None:
    """Refuse to check `what` (e.g. "teacher 'org/name'") for updates when this process cannot reach the Hub (it is
    unreachable, or offline mode is on): the local cache would answer with the commit last downloaded here, and a
    run would read "unchanged" for a model that moved.

    Raises:
        AFTError: the Hub cannot be asked.
    """
    why, reason = _why_not_asked()
    if why is None:
        return
    raise AFTError(f"cannot check {what} for updates: {why}, and the local cache knows only the commits downloaded "
                   "here: run hf-aft check-updates where the Hub can be reached"
                   + ("." if reason else " (unset HF_HUB_OFFLINE)."))


def check_can_push(repo_id: str, way_out: str) -> None:
    """Refuse a `--push_to_hub` before the work it would publish (training, feature extraction) when this process
    cannot reach the Hub (offline mode is on, or the endpoint takes no connection): the push would fail only at the
    end. `way_out` says how to publish later (e.g. the `hf-aft push` command).

    Raises:
        AFTError: the Hub cannot be reached from here.
    """
    why, reason = _why_not_asked()
    if why is None:
        return
    raise AFTError(f"--push_to_hub cannot push to {repo_id!r}: {why}. Drop --push_to_hub and {way_out} where the "
                   "Hub can be reached" + ("." if reason else " (or unset HF_HUB_OFFLINE)."))


def unreachable_now() -> str | None:
    """`unreachable_because`, asked again (a connection that failed mid-way: is the Hub gone, or did it refuse?)."""
    unreachable_because.cache_clear()
    return unreachable_because()
