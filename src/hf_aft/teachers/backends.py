"""Where a text teacher's forward pass runs: eager PyTorch (`torch`, the default) or ONNX Runtime on CPU.

`onnxruntime` exports the teacher once per resolved revision with torch's dynamo ONNX exporter (dynamic batch and
length), lets onnxscript's ONNX Runtime rewrites fuse attention, GELU and the layer norms
(`onnxscript.rewriter.ort_fusions.optimize_for_ort`: the library's fusions, none written here), and runs it with
onnxruntime's CPU provider. `onnxruntime-int8` adds onnxruntime's dynamic quantisation (`quantize_dynamic`, int8
weights per output channel). Exports live under `<features cache>/onnx/`, keyed by teacher, revision, output and the
exporter's versions, and are written to a temporary folder renamed into place, so a killed export leaves nothing half
made.

Every time a backend is built its features are compared with eager PyTorch's on the block's own texts (a padded batch
of mixed lengths and a single unpadded text): float32 must match to cosine >= 0.99999 (else a damaged export is made
again, then one line); int8's cosine is measured and logged, and below 0.95 refused (it quantises: see
docs/benchmarks.md for its cost).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, get_args

import numpy as np
import torch
from datasets.fingerprint import Hasher

from ..errors import AFTError, one_line, quieted, require_extra, warn_once
from ..faults import disk_errno, disk_error
from ..filesystems import nearest_existing
from .pooling import pool

logger = logging.getLogger(__name__)

TeacherBackend = Literal["torch", "onnxruntime", "onnxruntime-int8"]
TEACHER_BACKENDS = get_args(TeacherBackend)
MIN_COSINE = 0.99999  # float32 ONNX features against eager PyTorch's
INT8_FLOOR = 0.95  # int8's mean cosine to float32: below it the quantised model is no longer the teacher
EXPORT_VERSION = "1"  # bump when the export (its inputs, outputs or rewrites) changes
MODEL_FILES = {"onnxruntime": "model.onnx", "onnxruntime-int8": "model-int8.onnx"}


def check_backend(backend: str, spec: str, modality: str, device: torch.device, device_map: str | None) -> None:
    """Refuse, in one line, a backend this teacher cannot run on: ONNX Runtime runs text teachers on CPU."""
    if backend not in TEACHER_BACKENDS:
        raise AFTError(f"unknown teacher_backend {backend!r}: choose one of {', '.join(TEACHER_BACKENDS)}.")
    if backend == "torch":
        return
    if modality != "text":
        raise AFTError(f"--teacher_backend {backend} runs text teachers; {spec!r} is an image model: run it with "
                       "--teacher_backend torch.")
    if device.type != "cpu" or device_map:
        raise AFTError(f"--teacher_backend {backend} runs on CPU, but the teachers are placed on "
                       f"{device_map or device}: on an accelerator use --teacher_backend torch (with --teacher_dtype "
                       "bfloat16).")
    require_extra("export", f"--teacher_backend {backend}")


def output_field(pooling: str) -> str:
    """The one model output a pooling reads (text.py's `pool`)."""
    return {"logits": "logits", "pooler": "pooler_output"}.get(pooling, "last_hidden_state")


class _Output(torch.nn.Module):
    """The teacher with (input_ids, attention_mask) in and the one output its pooling reads out."""

    def __init__(self, model, field: str):
        super().__init__()
        self.model, self.field = model, field

    def forward(self, input_ids, attention_mask):
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask), self.field)


class OnnxTeacherModel:
    """An ONNX Runtime session that answers like the transformers model it was exported from, for `pool`: called
    with the padded batch, it returns an object holding the one output field, a CPU tensor [B, T, H] or [B, H]."""

    device = torch.device("cpu")

    def __init__(self, path: Path, field: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many as eager PyTorch would use
        options.log_severity_level = 4  # fatal only: its errors come back as exceptions, said in hf-aft's own line
        # Idle threads sleep rather than spin between runs: spinning took CPU from the tokenizer and the Arrow writes
        # that run between batches (bench/scale.py, 2 cores: float32 180 -> 188 rows/s, int8 196 -> 227).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.field = field

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        feed = {"input_ids": input_ids.numpy().astype(np.int64),
                "attention_mask": attention_mask.numpy().astype(np.int64)}
        return SimpleNamespace(**{self.field: torch.from_numpy(self.session.run(None, feed)[0])})


def export_folder(root: Path, teacher) -> Path:
    """Where this teacher's export lives: one folder per teacher, resolved revision, output and exporter version."""
    import onnxscript

    key = Hasher.hash([EXPORT_VERSION, teacher.name, teacher.revision, output_field(teacher.pooling),
                       teacher.options.get("gguf_file"), torch.__version__, onnxscript.__version__])
    return root / f"{Path(teacher.name).name or 'teacher'}-{key}"


def _staging_prefix() -> str:
    return f".partial-{socket.gethostname()}-{os.getpid()}-"


def _sweep(folder: Path) -> None:
    """Remove what an export or quantisation killed with -9 left in `folder`: staging entries of this host whose
    process is gone."""
    for path in folder.glob(f".partial-{socket.gethostname()}-*"):
        pid = path.name.removeprefix(f".partial-{socket.gethostname()}-").split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        except (ValueError, PermissionError):  # not ours to judge: another user's, or not named by us
            continue


def _export(model, field: str, probe: dict, folder: Path, fuse: bool) -> None:
    """The float32 teacher as `folder/model.onnx` (fused for ONNX Runtime when `fuse`), written in a temporary
    folder first."""
    import onnx_ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix()}{folder.name}-", dir=folder.parent))
    staging.chmod(0o755)  # readable like the rest of the cache (mkdtemp makes it private)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), quieted("torch.onnx"):
            warnings.simplefilter("ignore")
            graph = torch.onnx.export(_Output(model, field), (probe["input_ids"], probe["attention_mask"]),
                                      input_names=["input_ids", "attention_mask"], output_names=[field],
                                      dynamic_shapes=(dims, dims), dynamo=True, optimize=True, verbose=False).model
            if fuse:
                graph, _ = optimize_for_ort(graph)
        onnx_ir.save(graph, staging / MODEL_FILES["onnxruntime"], external_data="model.onnx.data")
        os.replace(staging, folder)  # atomic: another process that got there first wins (same content)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _quantized(folder: Path) -> Path:
    """`folder/model-int8.onnx`, made once: onnxruntime's dynamic quantisation of the float32 file (int8 weights per
    output channel, 7-bit range: without it, AVX2 and AVX-512 CPUs that lack VNNI saturate their u8 x s8 products,
    which took all-mpnet-base-v2's features to cosine 0.03; with it, 0.86)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / MODEL_FILES["onnxruntime-int8"]
    if not target.is_file():
        _sweep(folder)
        staging = folder / f"{_staging_prefix()}{target.name}"
        try:
            with quieted(""):  # its advice to pre-process is for static quantization
                quantize_dynamic(folder / MODEL_FILES["onnxruntime"], staging, weight_type=QuantType.QInt8,
                                 per_channel=True, reduce_range=True)
            os.replace(staging, target)
        finally:  # a full disk or a Ctrl-C leaves no half-written file
            staging.unlink(missing_ok=True)
    return target


def _cosines(eager, onnx_model, probes: list[dict], pooling: str) -> np.ndarray:
    """Per probe row, the cosine of the ONNX features to eager PyTorch's (1 where both are zero vectors)."""
    values = []
    for batch in probes:
        a = pool(eager(**batch), batch["attention_mask"], pooling).double()
        b = pool(onnx_model(**batch), batch["attention_mask"], pooling).double()
        both_zero = (a.norm(dim=1) < 1e-12) & (b.norm(dim=1) < 1e-12)
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)
        values.append(torch.where(both_zero, 1.0, cosine))
    return torch.cat(values).numpy()


def _float_model(teacher, folder: Path, probes: list[dict]) -> OnnxTeacherModel:
    """The float32 export, checked: the one kept from an earlier run, else a fresh fused one, else a fresh one
    without onnxscript's fusions, each next when the last fails to load or run or its features are not eager
    PyTorch's to cosine 0.99999 (a damaged file; a fusion that does not fit this architecture, as GPT-2's Conv1D)."""
    field, problem = output_field(teacher.pooling), ""
    for fuse in ([True] if folder.is_dir() else []) + [True, False]:
        try:
            if not (folder / MODEL_FILES["onnxruntime"]).is_file():
                _export(teacher.model, field, probes[0], folder, fuse)
            model = OnnxTeacherModel(folder / MODEL_FILES["onnxruntime"], field)
            cosines = _cosines(teacher.model, model, probes[1:], teacher.pooling)
        except (OSError, AFTError):
            raise
        except Exception as error:  # exporter, rewriter or session failures
            problem = one_line(error)[:300]
        else:
            if cosines.min() >= MIN_COSINE:
                return model
            problem = f"its features are at cosine {cosines.min():.6f} to PyTorch's"
        logger.warning("teacher %s: its ONNX export was not usable (%s); making it again", teacher.spec, problem)
        shutil.rmtree(folder, ignore_errors=True)
    raise AFTError(f"could not run teacher {teacher.spec!r} in ONNX Runtime ({problem}): run it with "
                   "--teacher_backend torch.")


def onnx_teacher_model(teacher, probes: list[dict]) -> OnnxTeacherModel:
    """The ONNX Runtime model for `teacher` (loaded eagerly: `teacher.model`), exported with `probes[0]` as the
    example input and checked on the others (padded batches of the texts it is about to run).

    Raises:
        AFTError: no float32 export gives eager PyTorch's features (one line naming the way out, --teacher_backend
            torch), or int8's features are below mean cosine 0.95 to PyTorch's (the quantised model is no longer
            this teacher: --teacher_backend onnxruntime keeps float32).
    """
    folder = export_folder(Path(teacher.export_root), teacher)
    try:
        return _checked(teacher, folder, probes)
    except OSError as error:  # a full disk, or a file where a folder of the export should be
        if disk_errno(error) is not None:
            raise disk_error(error, folder.parent, way_out="free space there, or run the teachers with "
                             "--teacher_backend torch") from error
        free = shutil.disk_usage(nearest_existing(folder)).free / 1e6
        raise AFTError(f"could not write teacher {teacher.spec!r}'s ONNX export in {str(folder.parent)!r} "
                       f"({one_line(error)[:200]}; {free:,.0f} MB free there): remove what is in the way or free "
                       "space, or run it with --teacher_backend torch.") from error


def _checked(teacher, folder: Path, probes: list[dict]) -> OnnxTeacherModel:
    with torch.inference_mode():
        model = _float_model(teacher, folder, probes)
        if teacher.backend != "onnxruntime-int8":
            return model
        int8_file = folder / MODEL_FILES["onnxruntime-int8"]
        for _ in range(2):  # an int8 file kept from an earlier run that fails is made again, once
            made = not int8_file.is_file()
            try:
                model = OnnxTeacherModel(_quantized(folder), model.field)
                cosines = _cosines(teacher.model, model, probes[1:], teacher.pooling)
            except (OSError, AFTError):
                raise
            except Exception as error:
                if made:
                    raise AFTError(f"could not quantise teacher {teacher.spec!r} to int8 ({one_line(error)[:300]}): "
                                   "run it with --teacher_backend onnxruntime (float32) or torch.") from error
            else:
                if made or cosines.mean() >= INT8_FLOOR:
                    break
            int8_file.unlink()
    measured = (f"teacher {teacher.spec!r} in int8: its features are at cosine {cosines.mean():.4f} (lowest "
                f"{cosines.min():.4f}) to float32 PyTorch's on {len(cosines)} texts of the first block")
    if cosines.mean() < INT8_FLOOR:
        raise AFTError(f"{measured}, below {INT8_FLOOR}: dynamic int8 quantisation loses too much of this teacher; "
                       "run it with --teacher_backend onnxruntime (float32) or torch.")
    warn_once(logger, measured + ".")
    return model
