"""Names of the files a run writes into its folder, for the modules that read another run's folder."""

#: The run record, written when a run starts: its resolved config and fingerprint (``blocksft.run_identity``).
RUN_RECORD = "run_config.json"
#: The results of a finished run (``blocksft.results``).
RESULTS = "results.json"
