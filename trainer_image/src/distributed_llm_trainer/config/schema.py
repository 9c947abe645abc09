"""Typed run configuration: one pydantic model per YAML section, every field documented.

Unknown keys are rejected (``extra="forbid"``); cross-field checks live in validators that raise
``ValueError`` naming the field, so the loader can turn them into one ``error: <key>: ...`` line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class RunConfig(Section):
    name: str | None = Field(None, description="Run directory name under output_dir; default: config stem + timestamp.")
    output_dir: str = Field("runs", description="Parent folder of all run directories.")
    seed: int = Field(1337, ge=0, description="Seed for model init, data split, shuffling and dropout.")
    deterministic: bool = Field(False, description="Use torch deterministic algorithms (bitwise-reproducible on CPU).")

    @model_validator(mode="after")
    def _safe_name(self) -> RunConfig:
        if self.name is not None:
            bad = self.name in ("", ".", "..") or "/" in self.name or "\\" in self.name or self.name.startswith(".")
            if bad:
                raise ValueError("name: must be a plain folder name (no '/', '..' or leading '.'); pick another name")
        return self


class ModelConfig(Section):
    name: str = Field("gpt-debug", description="Preset name (gpt2-small, llama-160m, ...); fields below override it.")
    backend: Literal["native", "hf"] = Field("native", description="native: our fast GPT/Llama; hf: transformers.")
    family: Literal["gpt2", "llama"] | None = Field(None, description="Native architecture family; default: preset's.")
    hf_model_type: str | None = Field(None, description="transformers model_type for backend=hf (e.g. mistral).")
    hidden_size: int | None = Field(None, gt=0, description="Width of the residual stream.")
    num_attention_heads: int | None = Field(None, gt=0, description="Number of query heads.")
    num_key_value_heads: int | None = Field(None, gt=0, description="Key/value heads (grouped-query attention).")
    num_layers: int | None = Field(None, gt=0, description="Number of transformer blocks.")
    intermediate_size: int | None = Field(None, gt=0, description="MLP hidden width; default: preset's.")
    max_position_embeddings: int | None = Field(None, gt=0, description="Longest sequence the model supports.")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="Dropout on attention and residual paths.")
    tie_embeddings: bool | None = Field(None, description="Share input embedding and output head weights.")
    rope_theta: float | None = Field(None, gt=0, description="RoPE base frequency (llama family).")
    norm_eps: float | None = Field(None, gt=0, description="Epsilon of LayerNorm/RMSNorm.")
    bias: bool | None = Field(None, description="Biases in linear layers (gpt2: yes, llama: no).")
    gelu_approximate: Literal["tanh", "none"] | None = Field(
        None, description="gpt2 family GELU: tanh (GPT-2's gelu_new, the default) or none (exact, as in nanoGPT)."
    )
    padded_vocab_size: int | None = Field(
        None, gt=0, description="Embedding/head rows if above the tokenizer's size (e.g. 50304 for tensor cores)."
    )
    activation_checkpointing: bool = Field(False, description="Recompute each block in backward to save memory.")
    compile: bool | None = Field(None, description="torch.compile the inner model; default: on for CUDA, off on CPU.")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode; max-autotune benchmarks matmul kernels (minutes to compile)."
    )
    attention_backend: Literal["auto", "flash", "cudnn", "efficient", "math"] = Field(
        "auto", description="SDPA kernel for causal attention: auto (PyTorch picks) or force one (cudnn: Hopper)."
    )
    loss_chunk_size: int | None = Field(
        None, ge=0, description="Tokens per chunk of the fused head+loss; 0 = one plain pass; unset = auto."
    )
    init_from: str | None = Field(None, description="Local transformers checkpoint dir to load weights from.")
    trust_remote_code: bool = Field(False, description="Allow custom code from HF checkpoints (off: safer).")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        h, n = self.hidden_size, self.num_attention_heads
        if h is not None and n is not None and h % n:
            raise ValueError(
                f"num_attention_heads: {n} does not divide hidden_size {h}; choose heads that divide the hidden size"
            )
        kv = self.num_key_value_heads
        if kv is not None and n is not None and n % kv:
            raise ValueError(f"num_key_value_heads: {kv} does not divide num_attention_heads {n}; pick a divisor")
        if self.compile is False and self.compile_mode != "default":
            raise ValueError(f"compile_mode: {self.compile_mode!r} has no effect with compile: false; "
                             "set compile: true or remove compile_mode")
        if self.backend == "hf" and self.attention_backend != "auto":
            raise ValueError("attention_backend: applies to the native backend only (hf models use PyTorch's "
                             "choice); remove it or use backend: native")
        return self


class DataConfig(Section):
    path: str | None = Field(None, description="Local file, directory or glob (.txt/.jsonl/.json/.parquet/.csv).")
    hf_name: str | None = Field(None, description="Hub dataset name (instead of path).")
    hf_config: str | None = Field(None, description="Hub dataset configuration name.")
    hf_split: str = Field("train", description="Hub dataset split to read.")
    streaming: bool = Field(False, description="Stream the source and tokenize on the fly (corpora larger than disk).")
    text_field: str = Field("text", description="Column holding the text in jsonl/json/parquet/csv sources.")
    seq_len: int = Field(256, gt=1, description="Tokens per training window (the model sees seq_len + 1 per sample).")
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of documents held out for validation.")
    split: Literal["auto", "documents", "tail"] = Field(
        "auto", description="documents: hold out whole docs; tail: last tokens; auto: docs unless too few."
    )
    pack: bool = Field(True, description="Pack documents into one stream; false: one padded sample per document.")
    num_workers: int = Field(1, ge=0, description="DataLoader worker processes.")
    cache_dir: str | None = Field(None, description="Token cache folder; default: <output_dir>/.cache.")
    max_documents: int | None = Field(None, gt=0, description="Use only the first N documents (quick experiments).")
    min_chars: int = Field(0, ge=0, description="Drop documents shorter than this many characters.")
    normalize: Literal["none", "NFC", "NFKC"] = Field("none", description="Unicode normalization of each document.")
    strip: bool = Field(False, description="Strip leading/trailing whitespace of each document.")
    dedup: bool = Field(False, description="Drop exact-duplicate documents.")
    preprocess: str | None = Field(None, description="User hook 'module:function' mapping a list of texts to texts.")
    encoding_errors: Literal["replace", "error"] = Field("replace", description="Non-UTF-8 bytes: replace or fail.")
    shuffle: bool = Field(True, description="Reshuffle training windows every epoch with a seeded permutation.")
    random_offset: bool = Field(True, description="Shift packed windows by a seeded per-epoch offset.")


class TokenizerConfig(Section):
    type: Literal["bpe", "char", "byte", "hf"] = Field("bpe", description="bpe | char | byte | hf (pretrained).")
    vocab_size: int = Field(8192, gt=0, description="Vocabulary size for a trained BPE tokenizer.")
    name_or_path: str | None = Field(None, description="Pretrained tokenizer (hub name or local dir) for type=hf.")
    train_sample_bytes: int = Field(50_000_000, gt=0, description="Bytes of the train split used to train BPE.")


class TrainingConfig(Section):
    batch_size: int | Literal["auto"] = Field(
        8, description="Micro-batch per device; auto: the fastest that fits on one CUDA GPU (searched), 8 on CPU."
    )
    global_batch_size: int | None = Field(
        None, gt=0, description="Samples per optimizer step over all devices; accumulation is derived from it. "
        "Unset: batch_size x the world size the run started with, kept when it resumes on another world size."
    )
    learning_rate: float = Field(6e-4, gt=0, description="Peak learning rate after warmup.")
    min_lr: float = Field(6e-5, ge=0, description="Learning rate at the end of cosine decay.")
    warmup_steps: int = Field(100, ge=0, description="Optimizer steps of linear warmup.")
    lr_decay_steps: int | None = Field(None, gt=0, description="Steps of cosine decay; default: the run's total.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    max_epochs: int | None = Field(None, gt=0, description="Stop after this many passes over the training windows.")
    max_tokens: int | None = Field(None, gt=0, description="Stop after this many training tokens.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (not on biases, norms, embeddings).")
    decay_embeddings: bool = Field(False, description="Decay embedding matrices too (nanoGPT and HF Trainer do).")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this; 0 disables.")
    precision: Literal["auto", "32", "32-true", "bf16-mixed", "bf16-true", "16-mixed"] = Field(
        "auto", description="auto: bf16-mixed on GPUs that support it, else 32."
    )
    eval_interval: int = Field(100, gt=0, description="Validate every this many optimizer steps.")
    eval_steps: int = Field(20, gt=0,
        description="Validation batches per evaluation, over all ranks together.")
    early_stop_patience: int | None = Field(
        None, gt=0, description="Stop after this many evaluations without a new best val loss; null: never."
    )
    fused_adamw: bool | None = Field(None, description="Fused AdamW kernel; default: on for CUDA.")
    fp8: bool = Field(False, description="FP8 training on Hopper GPUs through torchao float8.")
    tf32: bool = Field(True, description="Allow TF32 matmuls on CUDA.")
    skip_nonfinite: bool = Field(True, description="Skip the update when loss or gradient norm is not finite.")
    max_bad_steps: int = Field(5, gt=0, description="Consecutive skipped steps before rolling back to a checkpoint.")
    spike_factor: float | None = Field(
        None, gt=1, description="Roll back when loss exceeds this multiple of its running mean; null: off."
    )

    @model_validator(mode="after")
    def _budget(self) -> TrainingConfig:
        if self.batch_size != "auto" and self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}; use a positive micro-batch size")
        if self.min_lr > self.learning_rate:
            raise ValueError(f"min_lr: {self.min_lr} exceeds learning_rate {self.learning_rate}; lower min_lr")
        return self


class FSDPConfig(Section):
    sharding: Literal["full", "hybrid"] = Field("full", description="full: shard over all ranks; hybrid: per node.")
    cpu_offload: bool = Field(False, description="Keep sharded parameters and optimizer state on CPU.")
    mixed_precision: bool = Field(True, description="bf16 params/compute, fp32 reduce (when precision is bf16).")


class DeepSpeedConfig(Section):
    stage: Literal[1, 2, 3] = Field(2, description="ZeRO stage.")
    offload_optimizer: bool = Field(False, description="Offload optimizer state to CPU.")


class DDPConfig(Section):
    gradient_as_bucket_view: bool = Field(True, description="Gradients alias DDP buckets (saves a copy).")
    static_graph: bool = Field(
        True, description="Tell DDP the graph does not change between steps (off with gradient accumulation)."
    )
    find_unused_parameters: bool = Field(False, description="Search for unused parameters each step (slow).")


class DistributedConfig(Section):
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field("auto", description="Lightning strategy.")
    accelerator: Literal["auto", "cpu", "gpu"] = Field("auto", description="Device type.")
    devices: int | Literal["auto"] = Field(1, description="Processes (devices) per node.")
    num_nodes: int = Field(1, gt=0, description="Number of nodes.")
    timeout_s: int = Field(300, gt=0, description="Collective timeout: a dead rank ends the job after this long.")
    ddp: DDPConfig = Field(default_factory=DDPConfig, description="DDP options.")
    fsdp: FSDPConfig = Field(default_factory=FSDPConfig, description="FSDP2 options.")
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig, description="DeepSpeed options.")


class WandbConfig(Section):
    enabled: bool = Field(False, description="Log to Weights & Biases.")
    project: str = Field("distributed_llm_trainer", description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (team or user).")
    tags: list[str] = Field(default_factory=list, description="W&B run tags.")
    mode: Literal["auto", "online", "offline"] = Field("auto", description="auto: online with a key, else offline.")


class LoggingConfig(Section):
    interval: int = Field(10, gt=0, description="Log training metrics every this many optimizer steps.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files.")
    wandb: WandbConfig = Field(default_factory=WandbConfig, description="Weights & Biases options.")
    progress_bar: bool = Field(True, description="Live rich progress bar on the console.")
    system_metrics: bool = Field(True, description="Log CPU/RAM/disk (psutil) and GPU (NVML) utilization.")
    sample_prompts: list[str] = Field(default_factory=lambda: ["\n"], description="Prompts sampled at evaluations.")
    sample_tokens: int = Field(64, ge=0, description="New tokens per sample; 0 disables sampling.")
    peak_flops: float | None = Field(None, gt=0, description="Peak FLOP/s per device for MFU; default: GPU table.")
    report: bool = Field(True, description="Write report.html and loss.png at the end of the run.")


class CheckpointConfig(Section):
    every_n_steps: int | None = Field(None, gt=0, description="Save every N optimizer steps; default: eval_interval.")
    keep_last: int = Field(3, ge=1, description="Keep this many newest periodic checkpoints.")
    save_best: bool = Field(True, description="Keep the checkpoint with the lowest val loss.")
    export_hf: bool = Field(True, description="Export a transformers checkpoint to hf/ at the end.")
    export_best: bool = Field(True, description="Export the best-val-loss weights (else the final ones).")
    parity_tolerance: float = Field(1e-3, gt=0, description="Max |logit diff| allowed between export and model.")


class Config(Section):
    """A whole run: every section has defaults, so any subset of keys is a complete config."""

    run: RunConfig = Field(default_factory=RunConfig, description="Run identity, output location and seed.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model preset and overrides.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training data source and preprocessing.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Tokenizer type and size.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Optimization and budget.")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig, description="Strategy and devices.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Loggers, metrics, report.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="Checkpoints and export.")

    @model_validator(mode="after")
    def _cross(self) -> Config:
        if self.data.path is not None and self.data.hf_name is not None:
            raise ValueError("data.path: set either data.path or data.hf_name, not both")
        if self.tokenizer.type == "hf" and not self.tokenizer.name_or_path:
            raise ValueError("tokenizer.name_or_path: required when tokenizer.type is hf; name a tokenizer or dir")
        return self
