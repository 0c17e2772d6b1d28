"""LRTuner for the Hugging Face Trainer."""
