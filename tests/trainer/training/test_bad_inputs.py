"""The bad-input catalog (docs/bad-inputs.md): each row's behaviour, and no existing run file touched."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from .helpers import DEBUG, assert_one_error_line, cli, script, train_args, tree_digest


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("existing")
    assert cli(train_args(out, "done", "training.max_steps=4", "checkpoint.every_n_steps=2",
                          "checkpoint.export_hf=false"))[0] == 0
    return out


def _check(existing: Path, args: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    before = tree_digest(existing)
    code, err = cli(args, capsys)
    assert_one_error_line(code, err, fragment)
    assert tree_digest(existing) == before


def _text(tmp: Path, name: str, body: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(body if isinstance(body, bytes) else body.encode())
    return p


CONFIG_ROWS = [
    (["training.lerning_rate=0.1"], "did you mean 'learning_rate'"),
    (["training.max_steps=ten"], "valid integer"),
    (["training.learning_rate=-0.001"], "greater than 0"),
    (["training.batch_size=0"], ">= 1"),
    (["model.hidden_size=100", "model.num_attention_heads=3"], "does not divide"),
    (["training.min_lr=1.0"], "exceeds learning_rate"),
    (["training.global_batch_size=10"], "not a multiple"),
    (["run.name=../../etc"], "plain folder name"),
    (["data.seq_len=5000"], "seq_len"),
    (["model.name=gpt5"], "gpt2-small"),
    (["tokenizer.type=hf"], "name_or_path"),
    (["distributed.accelerator=gpu"], "no CUDA GPU"),
    (["training.precision=bf16-mixed"], "bf16"),
    (["distributed.strategy=deepspeed"], "deepspeed"),
    (["checkpoint.keep_last=0"], "greater than or equal to 1"),
    (["model.padded_vocab_size=10"], "smaller than the tokenizer's"),
    (["model.compile=false", "model.compile_mode=max-autotune"], "has no effect with compile: false"),
    (["model.attention_backend=cudnn"], "CUDA kernel and this run has no GPU"),
    (["model.backend=hf", "model.attention_backend=math"], "native backend only"),
]


@pytest.mark.parametrize(("overrides", "fragment"), CONFIG_ROWS, ids=[r[0][0] for r in CONFIG_ROWS])
def test_config_rows(existing_run: Path, overrides: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    if "gpu" in overrides[0] or "bf16" in overrides[0] or "cudnn" in overrides[0]:
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    _check(existing_run, train_args(existing_run, "new", *overrides), fragment, capsys)


def test_cli_rows(existing_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _check(existing_run, ["--config", str(tmp_path / "missing.yaml")], "file not found", capsys)
    _check(existing_run, ["--config", DEBUG, "--no-such-flag"], "unrecognized arguments", capsys)
    _check(existing_run, ["--config", DEBUG, "training.max_steps"], "section.key=value", capsys)
    bad_yaml = _text(tmp_path, "bad.yaml", "training: [1,\n")
    _check(existing_run, ["--config", str(bad_yaml)], "not valid YAML", capsys)
    _check(existing_run, [*train_args(existing_run, "x"), "--resume", str(tmp_path / "nope")], "not found", capsys)
    empty_run = tmp_path / "emptyrun"
    (empty_run / "checkpoints").mkdir(parents=True)
    _check(existing_run, [*train_args(existing_run, "x"), "--resume", str(empty_run)], "no usable checkpoint", capsys)
    _check(existing_run, train_args(existing_run, "done", "training.max_steps=2"), "already exists", capsys)


def test_data_rows(existing_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = lambda *o: train_args(existing_run, "new", f"data.cache_dir={tmp_path / 'cache'}", *o)  # noqa: E731
    _check(existing_run, run(f"data.path={tmp_path / 'none.txt'}"), "data.path", capsys)
    _check(existing_run, run(f"data.path={_text(tmp_path, 'empty.txt', '')}"), "empty", capsys)
    _check(existing_run, run(f"data.path={tmp_path}/*.nomatch"), "match", capsys)
    binary = _text(tmp_path, "bin.txt", b"ok text " * 50 + b"\xff\xfe\x00\x81" + b"more" * 50)
    _check(existing_run, run(f"data.path={binary}", "data.encoding_errors=error"), "byte", capsys)
    jl = _text(tmp_path, "docs.jsonl", '{"body": "hello"}\n{"body": "world"}\n')
    _check(existing_run, run(f"data.path={jl}"), "text", capsys)
    short = _text(tmp_path, "short.txt", "tiny")
    _check(existing_run, run(f"data.path={short}"), "seq_len", capsys)
    _check(existing_run, run("tokenizer.type=bpe", "tokenizer.vocab_size=100"), "tokenizer.vocab_size", capsys)
    _check(existing_run, run("data.preprocess=no_such_module:fn"), "data.preprocess", capsys)
    assert not any((tmp_path / "cache").glob("**/meta.json"))  # nothing a later run would trust


def test_resume_rows(existing_run: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = existing_run / "done"
    resume = ["--resume", str(run_dir)]
    _check(existing_run, [*train_args(existing_run, "done", "model.num_layers=3"), *resume], "model.num_layers",
           capsys)
    _check(existing_run, [*train_args(existing_run, "done", "data.seq_len=16"), *resume], "data.seq_len", capsys)
    _check(existing_run, [*train_args(existing_run, "done", "tokenizer.type=char"), *resume], "tokenizer", capsys)
    # elastic: an unset global batch is the first start's (4 = batch 4 x 1 process), which 3 x 4 cannot keep
    _check(existing_run, [*train_args(existing_run, "done", "distributed.devices=3", "distributed.accelerator=cpu"),
                          *resume], "training.global_batch_size: unset, so the run keeps the global batch of 4", capsys)


def test_corrupted_and_foreign_checkpoints_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Recovery rows: a truncated newest checkpoint, and a foreign pickle, are reported and the previous used."""
    assert cli(train_args(tmp_path, "r", "training.max_steps=6", "checkpoint.every_n_steps=2",
                          "checkpoint.export_hf=false", "checkpoint.save_best=false"))[0] == 0
    ckpts = tmp_path / "r" / "checkpoints"
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated (checksum mismatch)

    class Evil:
        def __reduce__(self):  # would run code on a pickle load
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    foreign = ckpts / "zzz-foreign.ckpt"
    torch.save({"obj": Evil()}, foreign)
    import hashlib

    (ckpts / "zzz-foreign.ckpt.sha256").write_text(hashlib.sha256(foreign.read_bytes()).hexdigest())
    os.utime(foreign)  # newest of all
    code, err = cli([*train_args(tmp_path, "r", "training.max_steps=8", "checkpoint.every_n_steps=2",
                                 "checkpoint.export_hf=false"), "--resume", str(tmp_path / "r")], capsys)
    assert code == 0, err
    assert not (tmp_path / "pwned").exists()


def test_environment_rows(existing_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a file instead
            blocker = _text(tmp_path, "afile", "x")
            _check(existing_run, train_args(blocker, "x"), "run.output_dir", capsys)
        else:
            _check(existing_run, train_args(ro, "x"), "run.output_dir", capsys)
    finally:
        ro.chmod(0o700)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        os.environ["MASTER_PORT"] = str(port)
        try:
            _check(existing_run, train_args(existing_run, "x", "distributed.devices=2",
                                            "distributed.accelerator=cpu"), "MASTER_PORT", capsys)
        finally:
            del os.environ["MASTER_PORT"]


WORLD_ROWS = [  # (WORLD_SIZE a launcher such as torchrun exports, overrides, fragment)
    ("3", ["distributed.strategy=fsdp", "distributed.fsdp.sharding=hybrid", "distributed.num_nodes=2",
           "distributed.devices=2"], "distributed.fsdp.sharding: hybrid shards within each node"),
    ("4", ["distributed.strategy=ddp", "distributed.num_nodes=2", "distributed.devices=1"],
     "distributed.devices: the launcher started 4 processes"),
]


@pytest.mark.parametrize(("world", "overrides", "fragment"), WORLD_ROWS, ids=["hybrid-not-divisible", "mismatch"])
def test_launched_world_rows(existing_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                             world: str, overrides: list[str], fragment: str) -> None:
    """A launched world that cannot fit the config (e.g. torchrun nodes with different --nproc-per-node) is one
    clear line before any process group exists, not a RuntimeError inside the run or Lightning's traceback."""
    monkeypatch.setenv("WORLD_SIZE", world)
    _check(existing_run, train_args(existing_run, "w", "distributed.accelerator=cpu", *overrides), fragment, capsys)
    assert not (existing_run / "w").exists()


def test_disk_full_during_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    import errno

    from distributed_llm_trainer.training import checkpoint_io

    assert cli(train_args(tmp_path, "r", "training.max_steps=4", "checkpoint.every_n_steps=2",
                          "checkpoint.export_hf=false"))[0] == 0
    before = tree_digest(tmp_path / "r" / "checkpoints")

    real = checkpoint_io.atomic_write_stream

    class FullDisk:  # the device fills up on the first write into the temp file
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

    def full(path: Path, write, before_replace=None) -> None:
        real(path, lambda f: write(FullDisk()), before_replace)

    monkeypatch.setattr(checkpoint_io, "atomic_write_stream", full)
    code, err = cli([*train_args(tmp_path, "r", "training.max_steps=8", "checkpoint.every_n_steps=2",
                                 "checkpoint.export_hf=false"), "--resume", str(tmp_path / "r")], capsys)
    assert_one_error_line(code, err, "No space left on device")
    after = tree_digest(tmp_path / "r" / "checkpoints")
    for name, digest in before.items():
        if name.startswith("step-"):
            assert after[name] == digest, name  # earlier checkpoints untouched
    assert not list((tmp_path / "r" / "checkpoints").glob(".*.tmp"))  # the half-written temp file is gone
    from distributed_llm_trainer.training.checkpoint_io import newest_valid_checkpoint

    assert newest_valid_checkpoint(tmp_path / "r" / "checkpoints") is not None


def test_one_line_through_a_real_process(tmp_path: Path) -> None:
    proc = script("run_training.py", "--config", DEBUG, "training.learning_rate=-1")
    assert_one_error_line(proc.returncode, proc.stderr, "training.learning_rate")
