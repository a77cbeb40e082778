"""Training: device handling, the patch loader and the loop (plain PyTorch)."""
