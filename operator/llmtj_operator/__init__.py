"""LLMTrainingJob operator."""
