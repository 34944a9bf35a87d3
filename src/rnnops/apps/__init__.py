"""What users run: the ``rnnops`` command, the HTTP server, batch scoring, reproduction."""
