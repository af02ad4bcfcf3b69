"""The ``mlpilot`` command line: one module per command group, thin over the services and the SDK."""
