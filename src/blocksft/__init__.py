"""blocksft: supervised fine-tuning of masked diffusion LMs (classical vs Blockwise SFT)."""

__version__ = "0.1.0"
