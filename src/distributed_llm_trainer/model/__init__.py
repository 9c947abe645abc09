"""Models: native GPT-2/Llama family, transformers backend, presets, HF interop, FLOPs accounting."""
