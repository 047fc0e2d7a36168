"""Models and their weights. Pure: imports no I/O library (no pyo, aiortc, MQTT) and no `daemon`."""
