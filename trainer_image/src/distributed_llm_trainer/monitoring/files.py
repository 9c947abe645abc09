"""Names of the files the monitoring package writes into a run directory (import-light: no torch)."""

METRICS_FILE = "metrics.csv"  # Lightning CSV logger
SAMPLES_FILE = "samples.jsonl"  # EvalSamples: one JSON object per prompt and evaluation
ENV_FILE = "environment.json"  # software and hardware of the run, recorded at its start
REPORT_FILE = "report.html"
LOSS_FILE = "loss.png"
