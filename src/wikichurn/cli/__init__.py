"""The ``wikichurn`` command line: one thin command per stage, and the end-to-end demo."""
