from pathlib import Path

import pytest
import yaml

from distributed_llm_trainer.config import Config, dump_config, load_config, parse_overrides
from distributed_llm_trainer.config.schema import Section
from distributed_llm_trainer.errors import UserError

REPO = Path(__file__).resolve().parents[3] / "trainer_image"
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_file_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert load_config(None, []).model_dump() != {} and dump_config(cfg)


def test_original_plan_file_loads_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "plan.yaml"
    p.write_text('model:\n  name: "gpt2-small"\n  hidden_size: 768\n  num_attention_heads: 12\n'
                 "training:\n  batch_size: 32\n  learning_rate: 0.0001\n  max_epochs: 10\n")
    cfg = load_config(p)
    assert cfg.model.name == "gpt2-small" and cfg.model.hidden_size == 768
    assert cfg.training.batch_size == 32 and cfg.training.max_epochs == 10 and cfg.training.max_steps is None
    assert cfg.data.path is None and cfg.data.hf_name is None  # the embedded default corpus


def test_required_keys_exist() -> None:
    cfg = load_config(None)
    dumped = cfg.model_dump()
    keys = {
        "run": ["name", "output_dir", "seed"],
        "model": ["name", "hidden_size", "num_attention_heads", "num_layers", "dropout"],
        "data": ["path", "seq_len"],
        "tokenizer": ["type", "vocab_size"],
        "training": ["batch_size", "global_batch_size", "learning_rate", "min_lr", "warmup_steps", "max_steps",
                     "max_epochs", "max_tokens", "weight_decay", "beta1", "beta2", "grad_clip", "precision",
                     "eval_interval", "eval_steps"],
        "checkpoint": ["every_n_steps", "keep_last"],
    }
    for section, names in keys.items():
        for name in names:
            assert name in dumped[section], f"{section}.{name}"
    assert set(dumped) == {"run", "model", "data", "tokenizer", "training", "distributed", "logging", "checkpoint"}


def _all_fields(model: type[Section], prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for name, field in model.model_fields.items():
        out.append((prefix + name, field))
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out += _all_fields(ann, f"{prefix}{name}.")
    return out


def test_every_field_has_a_description() -> None:
    missing = [k for k, f in _all_fields(Config) if not f.description]
    assert not missing


def test_overrides_are_typed_and_nested(tmp_path: Path) -> None:
    assert parse_overrides(["training.max_steps=50", "model.dropout=0.1", "data.path=x.txt"]) == {
        "training": {"max_steps": 50}, "model": {"dropout": 0.1}, "data": {"path": "x.txt"}}
    cfg = load_config(REPO / "config" / "default.yaml", ["training.max_steps=50", "model.dropout=0.1"])
    assert cfg.training.max_steps == 50 and cfg.model.dropout == 0.1
    # the rest of the file is kept
    assert cfg.tokenizer.vocab_size == yaml.safe_load((REPO / "config/default.yaml").read_text())["tokenizer"][
        "vocab_size"]


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(REPO / "config" / "default.yaml", ["run.name=x"])
    p = tmp_path / "resolved.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (["training.lerning_rate=0.1"], "training.lerning_rate", "did you mean 'learning_rate'"),
        (["trainng.max_steps=3"], "trainng", "did you mean 'training'"),
        (["training.max_steps=abc"], "training.max_steps", "valid integer"),
        (["training.learning_rate=-1"], "training.learning_rate", "greater than 0"),
        (["training.batch_size=0"], "training.batch_size", ">= 1"),
        (["model.hidden_size=100", "model.num_attention_heads=3"], "model.num_attention_heads", "divide"),
        (["tokenizer.type=wordpiece"], "tokenizer.type", "bpe"),
        (["run.name=../escape"], "run.name", "plain folder name"),
        (["training.min_lr=1", "training.learning_rate=0.1"], "training.min_lr", "exceeds"),
        (["model=3"], "model", "must be a section"),
        (["notakey"], "notakey", "section.key=value"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str, fragment: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(None, overrides)
    assert err.value.what == key
    assert fragment in err.value.why
    assert err.value.line().startswith(f"error: {key}: ") and "\n" not in err.value.line()


def test_missing_and_broken_config_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(listy)
