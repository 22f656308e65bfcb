"""Training: the Lightning module (wiring only), the masked-diffusion objective, the optimizer, held-out loss."""
