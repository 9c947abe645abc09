"""Data: sources, tokenizers, preprocessing, token cache, sampling and loaders."""
