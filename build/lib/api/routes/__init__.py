"""One router per resource, all under `core.protocol.API_PREFIX`."""
