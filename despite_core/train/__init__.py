"""Training (contrastive pre-training, HAR heads). Imports torch."""
