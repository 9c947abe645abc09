"""Generate text from a run: ``python scripts/generate.py --run runs/NAME --prompt "def "``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from distributed_llm_trainer.errors import ArgParser, UserError, run_cli  # noqa: E402


def main() -> int:
    p = ArgParser(description="Sample text from a trained run (KV-cached for native models).")
    p.add_argument("--run", required=True, help="run directory (runs/<name>)")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint to load")
    a = p.parse_args()
    if a.max_new_tokens < 1 or a.temperature < 0 or (a.top_k is not None and a.top_k < 1) or (
            a.top_p is not None and not 0 < a.top_p <= 1):
        raise UserError("command line", "need --max-new-tokens >= 1, --temperature >= 0, --top-k >= 1, "
                                        "0 < --top-p <= 1")
    import torch

    from distributed_llm_trainer.training.load_run import load_run

    torch.manual_seed(a.seed)
    _, model, tok = load_run(a.run, a.which)
    ids = tok(a.prompt, return_tensors="pt")["input_ids"]
    if ids.numel() == 0:
        ids = torch.tensor([[tok.eos_token_id]])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k,
                             top_p=a.top_p, eos_token_id=tok.eos_token_id)
    print(tok.decode(out[0].tolist(), skip_special_tokens=True))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
