"""CSV + TensorBoard + W&B (offline) loggers on a tiny training run: metrics, hyper-parameters, samples, secrets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from distributed_llm_trainer.config.schema import Config
from distributed_llm_trainer.monitoring import loggers as loggers_mod
from distributed_llm_trainer.monitoring.csv_logger import ResumableCSVLogger, truncate_after
from distributed_llm_trainer.monitoring.loggers import build_loggers, finish_loggers, wandb_mode
from distributed_llm_trainer.monitoring.metrics import TrainMetrics
from distributed_llm_trainer.monitoring.samples import EvalSamples
from distributed_llm_trainer.monitoring.system import SystemMetrics

from .mon_fakes import CharTokenizer, TinyLM, tiny_trainer, wandb_records

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # W&B key shape (40 hex)
FAKE_HF = "hf_FAKEfakeFAKEfakeFAKEfakeFAKEfake1234"
OTHER_SECRET = "s3cr3t-value-of-a-password-env"
TRAIN_KEYS = {"train/loss", "train/lr", "train/tokens_seen", "perf/tokens_per_s", "perf/tokens_per_s_per_device",
              "perf/step_time_s", "perf/data_wait_share"}
SYSTEM_KEYS = {"system/cpu_percent", "system/ram_used_bytes", "system/process_rss_bytes"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 6-step run with every logger (W&B in auto mode with an API key but no network) and all callbacks."""
    import wandb

    if wandb.run is not None:  # a run left open by a test that failed earlier would be reused by W&B
        wandb.finish()
    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_API_KEY", FAKE_KEY)
        mp.setenv("HF_TOKEN", FAKE_HF)
        mp.setenv("DB_PASSWORD", OTHER_SECRET)
        mp.delenv("WANDB_MODE", raising=False)
        mp.setattr(loggers_mod, "wandb_reachable", lambda timeout=3.0: False)  # no network, without waiting
        cfg = Config.model_validate({"logging": {"tensorboard": True, "wandb": {"enabled": True, "tags": ["t"]}}})
        assert wandb_mode(cfg.logging.wandb.mode) == "online"  # a key is set: online would be tried first
        loggers = build_loggers(cfg, run_dir, "tiny")
        config = cfg.model_dump(mode="json")
        config["extra"] = {"hub_token": FAKE_HF, "note": f"key is {FAKE_KEY}", "api_key": OTHER_SECRET}
        module = TinyLM(config)
        metrics = TrainMetrics(2, tokens_per_step=32, flops_per_token=1e6, world_size=1)
        samples = EvalSamples(["ab", ""], 5, CharTokenizer(), run_dir=run_dir, tokens_per_step=32)
        trainer = tiny_trainer(run_dir, 6, [metrics, SystemMetrics(2), samples], loggers)
        trainer.fit(module)
        hint = finish_loggers(loggers)
    return {"dir": run_dir, "hint": hint, "module": module, "samples": samples}


def test_csv_metrics_hparams_and_samples(run: dict) -> None:
    d: Path = run["dir"]
    with open(d / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = set(rows[0])
    assert TRAIN_KEYS | SYSTEM_KEYS | {"val/loss", "val/ppl", "step"} <= keys
    assert {r["step"] for r in rows if r["train/loss"]} == {"2", "4", "6"}
    assert "perf/mfu" not in keys  # no peak FLOP/s on CPU: MFU is absent, not zero
    hp = yaml.safe_load((d / "hparams.yaml").read_text())
    assert hp["config"]["logging"]["interval"] == 10 and hp["config"]["extra"]["hub_token"] == "***"
    recs = [json.loads(line) for line in (d / "samples.jsonl").read_text().splitlines()]
    assert [(r["step"], r["prompt"]) for r in recs] == [(3, "ab"), (3, ""), (6, "ab"), (6, "")]
    assert recs[0]["text"].startswith("ab") and len(recs[0]["text"]) == 7 and recs[0]["tokens"] == 96
    assert run["samples"].latest() == {r["prompt"]: r["text"] for r in recs[2:]}
    assert (d / "environment.json").is_file()


def test_tensorboard_scalars_text_and_hparams(run: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run["dir"] / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert TRAIN_KEYS | SYSTEM_KEYS | {"val/loss", "val/ppl"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4, 6]
    assert all(e.value > 0 for e in acc.Scalars("perf/tokens_per_s"))
    assert {"config", "samples/0", "samples/1"} <= {t.split("/text_summary")[0] for t in tags["tensors"]}
    config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "interval: 10" in config_text and FAKE_HF not in config_text
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


def test_wandb_offline_run_has_metrics_and_config(run: dict) -> None:
    offline = list((run["dir"] / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "auto mode without network must fall back to offline"
    assert run["hint"] == f"wandb sync {offline[0]}"
    records = wandb_records(next(offline[0].glob("*.wandb")))
    # flat keys come as a one-element nested_key; a logged table as samples/{_type,path,...}
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["trainer/global_step"] for h in history if "samples/_type" in h] == [3, 6]  # a table per evaluation
    logged = set().union(*history)
    assert TRAIN_KEYS | SYSTEM_KEYS | {"val/loss", "val/ppl", "trainer/global_step"} <= logged
    tables = [json.loads(p.read_text()) for p in (offline[0] / "files" / "media" / "table").glob("samples_*.json")]
    last = max(tables, key=lambda t: len(t["data"]))  # each table holds every evaluation so far
    assert last["columns"] == ["step", "prompt", "text"]
    assert [r[:2] for r in last["data"]] == [[3, "ab"], [3, ""], [6, "ab"], [6, ""]]
    losses = [(h["trainer/global_step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert [s for s, _ in losses] == [2, 4, 6]
    config: dict = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        items = r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        config.update({i.key: json.loads(i.value_json) for i in items})
    assert config["config"]["logging"]["wandb"]["tags"] == ["t"]
    assert config["config"]["extra"]["api_key"] == "***"


def test_no_secret_in_any_file_of_the_run_dir(run: dict) -> None:
    files = [p for p in run["dir"].rglob("*") if p.is_file()]
    assert len(files) > 10  # csv, hparams, tensorboard, wandb logs and run files, samples, environment
    for p in files:
        data = p.read_bytes()
        for secret in (FAKE_KEY, FAKE_HF, OTHER_SECRET):
            assert secret.encode() not in data, f"{secret[:6]}... leaked into {p}"


def test_csv_survives_resume_and_is_written_at_every_call(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("run: {}\n")  # a run dir is never empty: Lightning would wipe the csv
    first = ResumableCSVLogger(tmp_path)
    first.log_metrics({"train/loss": 2.0}, step=10)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1] == "10,2.0"  # on disk before any finalize
    resumed = ResumableCSVLogger(tmp_path)
    resumed.log_metrics({"train/loss": 1.5, "val/loss": 1.7}, step=20)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["train/loss"], r["val/loss"]) for r in rows] == [("10", "2.0", ""), ("20", "1.5", "1.7")]
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("30,1.2,1.")  # a crash in the middle of a row
    truncate_after(tmp_path / "metrics.csv", 10)  # resuming from the step-10 checkpoint
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,train/loss,val/loss", "10,2.0,"]


def test_wandb_is_opt_in_and_tensorboard_optional(tmp_path: Path) -> None:
    cfg = Config.model_validate({"logging": {"tensorboard": False}})
    loggers = build_loggers(cfg, tmp_path, "x")
    assert [type(lg).__name__ for lg in loggers] == ["ResumableCSVLogger"]
    assert finish_loggers(loggers) is None


def test_tensorboard_hides_steps_a_resumed_run_repeats(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = Config.model_validate({"logging": {"tensorboard": True}})
    crashed = build_loggers(cfg, tmp_path, "r")[1]
    for s in range(1, 11):  # crashed after step 10; the newest checkpoint is step 5
        crashed.log_metrics({"train/loss": float(s)}, step=s)
    crashed.finalize("failed")
    resumed = build_loggers(cfg, tmp_path, "r", resume_step=5)[1]
    for s in range(6, 9):
        resumed.log_metrics({"train/loss": 100.0 + s}, step=s)
    resumed.finalize("success")
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5),
                                                                       (6, 106), (7, 107), (8, 108)]


def test_wandb_falls_back_to_offline_when_online_start_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    import wandb

    real_init = wandb.init

    def init(**kwargs: object) -> object:
        if kwargs.get("mode") == "online":  # what a missing network or a rejected key looks like
            raise wandb.errors.CommError("could not reach api.wandb.ai")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    logger = loggers_mod.RunWandbLogger(name="x", save_dir=str(tmp_path), project="p", mode="online",
                                        settings=wandb.Settings(silent=True))
    logger.log_metrics({"train/loss": 1.0}, step=1)
    assert "logging offline instead" in capsys.readouterr().err
    hint = finish_loggers([logger])
    assert hint is not None and hint.startswith(f"wandb sync {tmp_path / 'wandb' / 'offline-run-'}")
