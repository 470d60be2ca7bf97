"""Several processes through Accelerate (2 CPU processes on the gloo backend): the global-batch kernel trains the
same student as one process with the whole batch, and the teachers' features are extracted in shards."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from datasets import Dataset
from safetensors.torch import load_file

from hf_aft.losses import AdaptiveKernelLoss

PYTHON_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the differentiable gather, on its own ----
def _gather_worker(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from hf_aft.distributed import gather, gather_with_grad

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    features, teacher, encoder, loss = _gather_problem()
    rows = slice(3 * rank, 6 + 3 * rank) if rank == 0 else slice(6, 9)  # uneven: 6 rows and 3 rows
    loss(gather_with_grad(encoder(features[rows])), gather(teacher[rows])).backward()
    grads = torch.cat([encoder.weight.grad.flatten(), encoder.bias.grad, loss.scale_logits.grad])
    dist.all_reduce(grads)  # what DDP (and AFTTrainer for the scales) do: average over processes
    results[rank] = (grads / 2).tolist()
    dist.destroy_process_group()


def _gather_problem():
    torch.manual_seed(0)
    encoder, loss = torch.nn.Linear(5, 3).double(), AdaptiveKernelLoss([4, 3]).double()
    with torch.no_grad():
        loss.scale_logits.normal_()
    return torch.randn(9, 5, dtype=torch.float64), torch.randn(9, 7, dtype=torch.float64), encoder, loss


def test_gather_with_grad_gives_the_gradient_of_one_global_batch():
    features, teacher, encoder, loss = _gather_problem()
    loss(encoder(features), teacher).backward()
    expected = torch.cat([encoder.weight.grad.flatten(), encoder.bias.grad, loss.scale_logits.grad])

    context = torch.multiprocessing.get_context("spawn")
    results = context.Manager().dict()
    torch.multiprocessing.start_processes(_gather_worker, args=(free_port(), results), nprocs=2,
                                          start_method="spawn")
    for rank in (0, 1):
        assert torch.allclose(torch.tensor(results[rank], dtype=torch.float64), expected, atol=1e-12)


# ---- accelerate launch -m hf_aft train ----
@pytest.fixture(scope="module")
def runs(tmp_path_factory, teacher_dirs):
    """One process with batch 8, and two processes with batch 4 each, global and local kernels."""
    root = tmp_path_factory.mktemp("distributed")
    # float64, so that the comparison sees the method and not float32 rounding, which the centred kernel's
    # cancellations amplify over SGD steps (in float32 the global gap is ~1e-3 of the update, local ~1).
    tiny.save_student(root / "student", dtype=torch.float64)
    (root / "data").mkdir()
    tiny.sentiment_dataset(32, seed=0).to_csv(root / "data" / "train.csv")

    def launch(name: str, processes: int, batch: int, *extra: str) -> subprocess.CompletedProcess:
        args = ["train", "--model_name_or_path", str(root / "student"), "--dataset_name", str(root / "data"),
                "--teachers", *map(str, teacher_dirs), "--output_dir", str(root / name),
                "--per_device_train_batch_size", str(batch), "--optim", "sgd", "--learning_rate", "0.1",
                "--scales_learning_rate", "1.0", "--beta", "1.0", "--max_steps", "4", "--seed", "0",
                "--save_strategy", "no", "--logging_steps", "1", "--report_to", "none", *extra]
        if processes == 1:
            command = [sys.executable, "-m", "hf_aft", *args]
        else:  # no --use_cpu: the product must notice there is no GPU by itself
            command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                       str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", str(free_port()), "-m", "hf_aft", *args]
        env = {**os.environ, "HF_HOME": str(root / "hf_home"), "OMP_NUM_THREADS": "1",
               "HF_DATASETS_CACHE": str(root / f"cache-{processes}")}  # separate caches: 2 processes extract too
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    logs = {"one": launch("one", 1, 8), "global": launch("global", 2, 4), "local": launch("local", 2, 4,
                                                                                          "--kernel_scope", "local")}
    return root, logs


def _gap(root: Path, a: str, b: str) -> tuple[float, float, float]:
    """(max weight gap / max update, max scale-logit gap, max scale logit) between runs a and b."""
    start = load_file(root / "student" / "model.safetensors")
    wa, wb = (load_file(root / run / "model.safetensors") for run in (a, b))
    sa, sb = (load_file(root / run / "transfer_state.safetensors")["scale_logits"] for run in (a, b))
    update = max((wa[k] - start[k]).abs().max().item() for k in start)
    gap = max((wa[k] - wb[k]).abs().max().item() for k in start)
    return gap / update, (sa - sb).abs().max().item(), sa.abs().max().item()


def test_two_processes_with_global_kernels_train_like_one_process_with_the_whole_batch(runs):
    root, _ = runs
    weight_gap, scale_gap, scale_size = _gap(root, "one", "global")
    assert weight_gap < 1e-9 and scale_gap < 1e-6 * scale_size
    local_gap, local_scale_gap, _ = _gap(root, "one", "local")
    assert local_gap > 1e-2 and local_scale_gap > 1e-2 * scale_size  # per-device kernels: another method


def test_logged_losses_and_scales_are_those_of_the_global_batch(runs):
    root, _ = runs

    def history(run):
        state = json.loads((root / run / "trainer_state.json").read_text())
        return [(e["task_loss"], e["transfer_loss"], e["scales/teacher-a/mean"]) for e in state["log_history"]
                if "transfer_loss" in e]

    assert len(history("global")) == 4
    np.testing.assert_allclose(history("global"), history("one"), rtol=1e-6)


def test_two_processes_extract_the_same_features_in_shards_and_write_once(runs):
    root, logs = runs
    assert "Assembling shards" in logs["global"].stderr  # the first 2-process run computed, in shards
    assert "Assembling shards" not in logs["local"].stderr  # the second reused the shared cache
    features = {}
    for processes in (1, 2):
        cache = root / f"cache-{processes}" / "hf_aft_features"
        assert not list(cache.glob("*shard*"))
        (joined,) = cache.glob("joined-*.arrow")
        features[processes] = np.asarray(Dataset.from_file(str(joined))["teacher_features"])
    np.testing.assert_allclose(features[2], features[1], atol=1e-6)
    assert logs["global"].stdout.count("student saved to") == 1  # only the main process reports and writes


def test_a_kernel_over_one_example_is_refused(monkeypatch, tmp_path):
    from hf_aft import AFTConfig
    from hf_aft.errors import AFTError

    monkeypatch.setenv("WORLD_SIZE", "2")  # as under accelerate launch --num_processes 2; refused before any setup
    with pytest.raises(AFTError, match="each process's batch, which would hold 1 example.*--kernel_scope global"):
        AFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=1, kernel_scope="local")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(AFTError, match="the global batch, which would hold 1 example"):
        AFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=1, transfer="rkd")


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "trainers" / "accelerate").glob("*.yaml")),
                         ids=lambda path: path.name)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes >= 2 and loaded.distributed_type.value in ("MULTI_GPU", "FSDP", "DEEPSPEED")


def test_a_two_process_run_resumes_on_two_processes(runs, teacher_dirs):
    """The transfer state was read onto the process's device name, "cpu:0", which safetensors refuses: a 2-process
    CPU run could not be resumed (nor could --beta auto, which resumes its candidates)."""
    root, _ = runs
    out = root / "resumed"
    base = ["train", "--model_name_or_path", str(root / "student"), "--dataset_name", str(root / "data"),
            "--teachers", *map(str, teacher_dirs), "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--seed", "0", "--report_to", "none", "--save_strategy", "steps", "--save_steps", "2"]
    env = {**os.environ, "HF_HOME": str(root / "hf_home"), "OMP_NUM_THREADS": "1",
           "HF_DATASETS_CACHE": str(root / "cache-2")}
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    for extra in (["--max_steps", "2"], ["--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2")]):
        command = [*launcher, "--main_process_port", str(free_port()), "-m", "hf_aft", *base, *extra]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4


def test_a_two_process_run_records_its_processes_and_a_one_process_rerun_says_it_differs(runs):
    """Its global batch is per-device batch x processes: a rerun of its recipe on one process trains with half of it,
    another student, so the recipe names its launch and the rerun says so."""
    root, _ = runs
    record = json.loads((root / "global" / "audit.json").read_text())
    assert record["processes"] == 2 and "1 thread each, 2 processes" in record["device"]
    assert "accelerate launch --multi_gpu --num_processes 2 -m hf_aft train --config recipe.yaml" in \
        (root / "global" / "recipe.yaml").read_text()
    env = {**os.environ, "HF_HOME": str(root / "hf_home"), "OMP_NUM_THREADS": "1",
           "HF_DATASETS_CACHE": str(root / "cache-1")}

    def rerun(run: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "hf_aft", "train", "--config", str(root / run / "recipe.yaml"),
                                 "--output_dir", str(root / f"rerun-{run}"), "--max_steps", "1", "--skip_cost_report"],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    assert "the recipe's run trained on 2 processes, this rerun on 1" in rerun("global").stderr
    assert "the recipe's run trained on" not in rerun("one").stderr  # the same number: nothing to say


def test_an_accelerate_launch_of_one_process_asked_for_two_is_said(tmp_path):
    """`accelerate launch --num_processes 2 --cpu -m hf_aft train ...` (no --multi_gpu, no config file) starts ONE
    process, silently: the run says so, with the launches that start two."""
    command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "2", "--cpu",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(free_port()), "-m", "hf_aft", "train", "--model_name_or_path", str(tmp_path / "no-student"),
               "--dataset_name", str(tmp_path / "no-data"), "--output_dir", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"):
        env.pop(name, None)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0 and "hf-aft: error: dataset file or folder" in result.stderr  # after the note
    said = result.stderr.split("hf-aft: error:")[0]  # accelerate repeats a failed process's stderr after it
    assert said.count("hf-aft: accelerate launch started this run as one process") == 1, result.stderr
    assert "--config_file trainers/accelerate/ddp.yaml --num_processes N" in result.stderr


@pytest.mark.parametrize("env, said", [
    ({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, True),
    ({"ACCELERATE_USE_CPU": "True"}, False),  # --num_processes 1: no rendezvous address
    ({"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "RANK": "0"}, False),  # --multi_gpu: torchrun's processes
    ({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "h", "OMPI_COMM_WORLD_SIZE": "4"}, False),  # mpirun's CPU processes
    ({}, False),  # python -m hf_aft
])
def test_the_one_process_note_reads_what_accelerate_launch_sets(env, said, monkeypatch):
    from hf_aft.distributed import SIZE_VARIABLES, one_process_launch_note

    for name in ("ACCELERATE_USE_CPU", "MASTER_ADDR", "MASTER_PORT", "RANK", *SIZE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (one_process_launch_note() is not None) == said
