"""The backend's core: validation, auth, the packager loop, history parameters, live fan-out.

Everything here talks to the outside only through `backend.ports`; nothing imports a driver or
the HTTP framework, so it is tested with the embedded adapters and plain values.
"""
