"""Monitoring: loggers, metrics callbacks, console, samples and the run report.

- loggers.py: ``build_loggers`` (CSV always, TensorBoard, W&B online/offline), ``finish_loggers``, ``wandb_sync_hint``
- metrics.py: ``TrainMetrics`` (loss, LR, grad norm, tokens, throughput, MFU, data wait, memory)
- system.py: ``SystemMetrics`` (CPU, RAM, RSS, disk I/O; GPU utilization/power/temperature via NVML)
- prometheus.py: ``RankMetrics`` (each rank's Prometheus metrics, multiprocess files; on under llmtj-worker)
- endpoint.py: ``serve`` (the pod's one /metrics endpoint in llmtj-worker: the ranks' files plus NVML per GPU)
- samples.py: ``EvalSamples`` (text samples at each evaluation, to every logger and samples.jsonl)
- console.py / progress.py: ``Console`` (rank-0 header, live progress, end-of-run table), ``LiveProgress``
- report.py: ``write_report`` (self-contained report.html and loss.png from a run directory)
- redact.py: ``redact`` / ``redact_text`` (keep API keys and tokens out of every output)

Submodules are imported on use: the report and the redaction helpers do not pull in torch or Lightning.
"""
