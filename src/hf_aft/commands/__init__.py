"""The `hf-aft` command line: one module per subcommand, each a thin layer over library functions that the Python
API exposes too (`hf_aft.train_student`, `hf_aft.extract_teacher_features`, `hf_aft.rank_teachers`, ...).

Bad input ends with one line `hf-aft: error: ...` on stderr and exit status 2; `HF_AFT_DEBUG=1` shows the traceback
with the chain of causes. Subcommands are imported on use only, so `hf-aft --help` is instant.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys

# name -> (one line of help, module under hf_aft.commands with a `run(argv)`), in the order a user meets them.
COMMANDS = {
    "demo": ("run the offline demo: AFT with unlabelled data against plain fine-tuning, on real data", "demo"),
    "rank-teachers": ("score candidate teachers on a task before training (LogME, linear probe)", "rank_teachers"),
    "student": ("make a small student: the first N layers of a pretrained model", "student"),
    "features": ("compute teacher features once and save them with the dataset", "features"),
    "train": ("train a student with Adaptive Feature Transfer (or KD, RKD, plain fine-tuning)", "train"),
    "push": ("push a trained student and its card to the Hub", "push"),
    "audit": ("print a run's lineage and check its files against audit.json", "audit"),
    "check-updates": ("check whether a run's teachers (or generator) changed; --retrain reruns it", "check_updates"),
    "export": ("export a student to ONNX (optionally int8) and check it on the eval split", "export"),
}


def _usage() -> str:
    lines = ["usage: hf-aft COMMAND [options]   (hf-aft COMMAND --help for its options)", "", "commands:"]
    return "\n".join(lines + [f"  {name:15s}{text}" for name, (text, _) in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    from .. import __version__
    from ..errors import AFTError
    from ..faults import signals_as_interrupts

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv and argv[0] in ("-V", "--version"):
        print(f"hf-aft {__version__}")
        return 0
    try:
        with signals_as_interrupts():
            _run_command(argv)
    except AFTError as error:
        return _refuse(error)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (faults.Interrupted)
        return _interrupted(interrupt)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except BrokenPipeError:  # `hf-aft train --help | head`: the reader left; no traceback (Python's own recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as a shell reports SIGPIPE
    except ImportError as error:  # an optional extra that is not installed: name the pip install
        from ..errors import missing_extra

        extra = missing_extra(error, f"hf-aft {argv[0]}" if argv else None)
        if extra is None:
            raise
        return _refuse(extra)
    except Exception as error:
        from ..faults import disk_errno, disk_error

        if disk_errno(error) is None:
            raise
        return _refuse(disk_error(error))
    finally:
        if "torch.distributed" in sys.modules:  # only a command that trained can have made a process group
            from ..distributed import close_process_group

            close_process_group()
    return 0


def _run_command(argv: list[str]) -> None:
    from ..errors import AFTError

    if not argv or argv[0] not in COMMANDS:
        print(_usage())
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1) if argv else []
        given = f"unknown command {argv[0]!r}" + (f" (did you mean {close[0]}?)" if close else "") if argv else (
            "no command given")
        raise AFTError(f"{given}: choose one of {', '.join(COMMANDS)}.")
    module = importlib.import_module(f"{__name__}.{COMMANDS[argv[0]][1]}")
    module.run(argv[1:])


def _refuse(error: Exception) -> int:
    if os.environ.get("HF_AFT_DEBUG"):
        raise error
    _close_progress_bars()
    print(f"hf-aft: error: {error}", file=sys.stderr)
    return 2


def _interrupted(interrupt: KeyboardInterrupt) -> int:
    """One line: which signal, what was kept (checkpoints, cached teacher features), how to go on. Imports nothing
    new: the signal may have landed in the middle of an import."""
    from .. import faults  # imported by main() already

    if os.environ.get("HF_AFT_DEBUG"):
        raise interrupt
    _close_progress_bars()
    print(file=sys.stderr)  # after the ^C the terminal echoed
    print(faults.interrupted_line(interrupt), file=sys.stderr)
    faults.kept.clear()
    faults.lost.clear()
    return faults.exit_status(interrupt)


def _close_progress_bars() -> None:
    """Close the progress bars an exception left open, so that none redraws itself after hf-aft's last line."""
    std = sys.modules.get("tqdm.std")
    bars = list(getattr(getattr(std, "tqdm", None), "_instances", None) or [])
    for bar in bars:
        try:
            bar.leave = False
            bar.close()
        except Exception:  # a bar half torn down by the interrupt: nothing to redraw
            pass
    if bars and not sys.stderr.isatty():  # in a log the bar's line ends in \r: the next line must start a line
        print(file=sys.stderr)
