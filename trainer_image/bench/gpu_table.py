"""Summarize bench/gpu_check.sh results: a markdown table of the speed variants, the compiled-vs-eager loss check,
the shakespeare-char-gpu run, the bare-model variants (model_*) with their kernel profiles. Usage:
python3 bench/gpu_table.py OUT_DIR (reads OUT_DIR/*.jsonl and shakespeare.json, writes OUT_DIR/table.md and prints
it; exit code 1 when a loss check ran and failed), or python3 bench/gpu_table.py --best OUT_DIR (prints "ENV|OVERRIDES"
of the fastest model_* variant, from its .variant file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Variant files in the order of the table: (file stem, label)
ROWS = [("base", "compiled, fused AdamW, TF32 (all on)"), ("cudnn", "cuDNN attention"),
        ("best", "fastest model_* settings"), ("eager", "compile off"),
        ("fp8", "FP8 on (torchao)"), ("no_fused", "fused AdamW off"), ("no_tf32", "TF32 off"),
        ("autotune", "compile max-autotune"), ("autobatch", "batch_size auto (eager)")]
MODEL_ROWS = [("model", "default attention"), ("model_cudnn", "cuDNN attention"),
              ("model_coord", "cuDNN + coordinate-descent tuning"), ("model_cg", "cuDNN + CUDA graphs"),
              ("model_autotune", "cuDNN + max-autotune")]
LOSS_RTOL = 0.02  # compiled vs eager bf16 losses over the same steps: |a - b| <= 2% of the loss
FP8_RTOL = 0.03  # fp8 vs bf16 over the same 50 steps (fp8 rounds activations and weights more coarsely)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]


def _f(x: Any, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def row(label: str, d: dict[str, Any]) -> str:
    mem = d.get("peak_memory_bytes")
    cells = [label, d["variant"], d.get("micro_batch", "-"), _f(d["tokens_per_s"], ",.0f"),
             _f(d["step_time_median_s"] * 1e3, ".1f"), _f(d["step_time_p90_s"] * 1e3, ".1f"), _f(d.get("mfu"), ".3f"),
             _f(mem / 2**30 if mem else None, ".2f"), _f(d.get("data_wait_share"), ".3f"),
             d.get("host_sync_steps", "-")]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def loss_check(a: list[float], b: list[float], rtol: float = LOSS_RTOL) -> tuple[bool, float]:
    n = min(len(a), len(b))
    if n == 0:
        return False, float("nan")
    worst = max(abs(x - y) / max(abs(y), 1e-6) for x, y in zip(a[:n], b[:n]))
    return worst <= rtol, worst


def model_runs(out: Path) -> dict[str, dict[str, Any]]:
    """The timing line of each model_* step that ran."""
    runs = {}
    for stem, _ in MODEL_ROWS:
        d = next((x for x in read_lines(out / f"{stem}.jsonl") if "tokens_per_s" in x), None)
        if d:
            runs[stem] = d
    return runs


def best_variant(out: Path) -> str:
    """``ENV|OVERRIDES`` of the fastest model_* variant that ran ("|" when none did: the defaults)."""
    runs = model_runs(out)
    if not runs:
        return "|"
    stem = max(runs, key=lambda k: runs[k]["tokens_per_s"])
    f = out / f"{stem}.variant"
    return f.read_text().strip() if f.is_file() else "|"


def model_lines(out: Path) -> list[str]:
    runs = model_runs(out)
    if not runs:
        return []
    lines = ["", "Bare model (scripts/benchmark_model.py, no Lightning, no data loader):", "",
             "| variant | tokens/s | x default | step median ms | MFU | TFLOP/s | peak GiB | warm-up s | loss after 50 "
             "steps |", "|---|---|---|---|---|---|---|---|---|"]
    ref = runs.get("model")
    for stem, label in MODEL_ROWS:
        if stem in runs:
            d = runs[stem]
            ratio = d["tokens_per_s"] / ref["tokens_per_s"] if ref else None
            lines.append(f"| {label} | {d['tokens_per_s']:,.0f} | {_f(ratio, '.3f')} | {d['step_ms_median']} | "
                         f"{_f(d.get('mfu'), '.3f')} | {d.get('tflops')} | {d.get('peak_mem_gib')} | "
                         f"{d.get('warmup_s')} | {d.get('last_loss')} |")
    for stem, label in MODEL_ROWS:
        prof = next((x["profile"] for x in read_lines(out / f"{stem}.jsonl") if "profile" in x), None)
        if prof:
            cats = ", ".join(f"{k} {v:.2f}" for k, v in prof["ms_per_step_by_category"].items())
            lines += ["", f"Profile, {label}: wall {prof['wall_ms_per_step']:.2f} ms/step, kernels "
                          f"{prof['busy_ms_per_step']:.2f} ms/step (busy {prof['busy_share']}); ms/step: {cats}"]
            lines += [f"  - {t['ms_per_step']:.2f} ms {t['category']}: {t['name']}" for t in prof["top"]]
    return lines


def main(out: Path) -> int:
    lines = ["| variant | loop | micro-batch | tokens/s | step median ms | step p90 ms | MFU | peak GiB | data wait | "
             "host-sync steps |", "|---|---|---|---|---|---|---|---|---|---|"]
    runs: dict[str, list[dict[str, Any]]] = {stem: read_lines(out / f"{stem}.jsonl") for stem, _ in ROWS}
    base_tps = None
    for stem, label in ROWS:
        for d in runs[stem]:
            if d["variant"] == "ratio":
                continue
            lines.append(row(label, d))
            if stem == "base" and d["variant"] == "pipeline":
                base_tps = d["tokens_per_s"]
    notes = []
    for d in runs["base"]:
        if d["variant"] == "ratio":
            notes.append(f"pipeline/bare step-time ratio (compiled): {d['step_time_ratio']:.3f} "
                         f"({d['overhead_percent']:+.1f}%)")
    if base_tps:
        for stem, label in ROWS[1:-1]:
            for d in runs[stem]:
                if d["variant"] == "pipeline":
                    notes.append(f"{label}: {d['tokens_per_s'] / base_tps:.2f}x the tokens/s of all-on")
    ok = True
    pipe = {stem: next((d for d in runs[stem] if d["variant"] == "pipeline"), None) for stem, _ in ROWS}
    bare = next((d for d in runs["base"] if d["variant"] == "bare"), None)
    if pipe["base"] and pipe["eager"] and "losses" in pipe["base"] and "losses" in pipe["eager"]:
        ok, worst = loss_check(pipe["base"]["losses"], pipe["eager"]["losses"])
        notes.append(f"compiled vs eager losses over {len(pipe['base']['losses'])} steps: max relative difference "
                     f"{worst:.2e} ({'OK' if ok else 'FAIL'}, tolerance {LOSS_RTOL})")
    else:
        notes.append("compiled vs eager loss check: not run (base or eager missing)")
    if pipe["base"] and pipe["fp8"] and "losses" in pipe["fp8"] and "losses" in pipe["base"]:
        fp8_ok, worst = loss_check(pipe["fp8"]["losses"], pipe["base"]["losses"], FP8_RTOL)
        ok = ok and fp8_ok
        notes.append(f"fp8 vs bf16 losses over {len(pipe['fp8']['losses'])} steps: max relative difference "
                     f"{worst:.2e} ({'OK' if fp8_ok else 'FAIL'}, tolerance {FP8_RTOL}); final "
                     f"{pipe['fp8']['losses'][-1]:.4f} vs {pipe['base']['losses'][-1]:.4f}")
    if pipe["base"] and pipe["cudnn"] and "losses" in pipe["cudnn"] and "losses" in pipe["base"]:
        attn_ok, worst = loss_check(pipe["cudnn"]["losses"], pipe["base"]["losses"])
        ok = ok and attn_ok
        notes.append(f"cuDNN vs default attention losses over {len(pipe['cudnn']['losses'])} steps: max relative "
                     f"difference {worst:.2e} ({'OK' if attn_ok else 'FAIL'}, tolerance {LOSS_RTOL})")
    if pipe["base"] and bare and "losses" in bare:
        _, worst = loss_check(pipe["base"]["losses"], bare["losses"])
        notes.append(f"pipeline vs bare losses (both compiled): max relative difference {worst:.2e}")
    for d in runs["best"]:
        if d["variant"] == "ratio":
            notes.append(f"fastest settings: pipeline/bare step-time ratio {d['step_time_ratio']:.3f} "
                         f"({d['overhead_percent']:+.1f}%)")
    best_bare = next((d for d in runs["best"] if d["variant"] == "bare"), None)
    if pipe["best"] and best_bare and "losses" in best_bare and "losses" in pipe["best"]:
        _, worst = loss_check(pipe["best"]["losses"], best_bare["losses"])
        notes.append(f"fastest settings: pipeline vs bare losses, max relative difference {worst:.2e}")
    if pipe["best"] and pipe["base"] and "losses" in pipe["best"] and "losses" in pipe["base"]:
        best_ok, worst = loss_check(pipe["best"]["losses"], pipe["base"]["losses"])
        ok = ok and best_ok
        notes.append(f"fastest settings vs all-on defaults, losses: max relative difference {worst:.2e} "
                     f"({'OK' if best_ok else 'FAIL'}, tolerance {LOSS_RTOL})")
    peak = out / "peak.json"
    if peak.is_file():
        tflops = json.loads(peak.read_text())["measured_bf16_peak_flops"] / 1e12
        notes.append(f"measured bf16 matmul peak: {tflops:.0f} TFLOP/s (the MFU column is against it)")
    shk = out / "shakespeare.json"
    if shk.is_file():
        s = json.loads(shk.read_text())
        notes.append(f"shakespeare-char-gpu: whole process {s.get('process_s')} s (run wall {s.get('wall_time_s')} s, "
                     f"train {s.get('train_time_s')} s), val loss final {s.get('final_val_loss')} / best "
                     f"{s.get('best_val_loss')}, {s.get('tokens_per_s')} tokens/s, {s.get('steps')} steps "
                     f"({s.get('stop_reason')}), exit {s.get('exit')}")
    text = "\n".join(lines + [""] + [f"- {n}" for n in notes] + model_lines(out)) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--best":
        print(best_variant(Path(sys.argv[2])))
        sys.exit(0)
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
