"""Side-by-side micro-benchmarks of the blocksft hot paths, on CPU or GPU: ``python -m experiments.bench``.

One module per section, measuring and rendering side by side; ``sections.SECTIONS`` is the table the
command runs (a new section is one module plus one entry). Shared pieces: ``timing`` (interleaved,
device-synchronised timings, machine description), ``common`` (configs composed through Hydra once,
data, models, the training step of ``blocksft``), ``render`` (Markdown helpers), ``cli`` (the command).
"""
