"""EvalSamples: fixed-seed samples at each evaluation that leave the training RNG stream, and so training, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from distributed_llm_trainer.monitoring.samples import EvalSamples

from .mon_fakes import CharTokenizer, TinyLM, tiny_trainer


def test_generate_is_seeded_and_restores_the_rng() -> None:
    module = TinyLM()
    cb = EvalSamples(["abc", "hello"], 12, CharTokenizer(), seed=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = cb.generate(module)
    assert torch.equal(torch.get_rng_state(), before)  # the training stream continues as if nothing happened
    torch.manual_seed(999)  # whatever the global state, the samples are the same
    assert cb.generate(module) == first
    assert first[0].startswith("abc") and len(first[0]) == 3 + 12
    assert EvalSamples(["abc"], 12, CharTokenizer(), seed=4).generate(module)[0] != first[0]
    assert module.model.training  # generate() left the train/eval mode as it found it


def test_empty_prompt_starts_from_end_of_text() -> None:
    texts = EvalSamples([""], 5, CharTokenizer()).generate(TinyLM())
    assert len(texts[0]) <= 5  # eos (id 0) is skipped when decoding; the rest are letters
    assert texts[0].isalpha() or texts[0] == ""


def _train(root: Path, with_samples: bool) -> tuple[dict[str, torch.Tensor], EvalSamples]:
    torch.manual_seed(0)
    module = TinyLM()
    cb = EvalSamples(["ab"], 8, CharTokenizer(), run_dir=root)
    trainer = tiny_trainer(root, 6, [cb] if with_samples else [])
    trainer.fit(module)
    return {k: v.clone() for k, v in module.state_dict().items()}, cb


def test_training_is_identical_with_and_without_sampling(tmp_path: Path) -> None:
    plain, _ = _train(tmp_path / "a", with_samples=False)
    sampled, cb = _train(tmp_path / "b", with_samples=True)
    assert plain.keys() == sampled.keys()
    for k in plain:
        assert torch.equal(plain[k], sampled[k]), k
    rows = [json.loads(line) for line in (tmp_path / "b" / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and all(r["text"].startswith("ab") for r in rows)
    assert cb.latest() == {"ab": rows[-1]["text"]}
    assert not (tmp_path / "a" / "samples.jsonl").exists()


def test_disabled_and_failing_sampling_never_stop_training(tmp_path: Path, capsys) -> None:
    class Broken(CharTokenizer):
        def __call__(self, text: str, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
            raise RuntimeError("tokenizer exploded")

    off = EvalSamples(["ab"], 0, CharTokenizer(), run_dir=tmp_path)
    broken = EvalSamples(["ab"], 4, Broken(), run_dir=tmp_path)
    tiny_trainer(tmp_path, 3, [off, broken]).fit(TinyLM())
    assert off.history == [] and broken.history == []
    assert "sampling at step 3 failed: RuntimeError: tokenizer exploded" in capsys.readouterr().err
