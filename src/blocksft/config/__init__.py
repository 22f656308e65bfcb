"""The composed config: validated before anything is built (``validation``: one-line errors naming the key)."""
