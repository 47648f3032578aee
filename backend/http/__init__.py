"""The HTTP face of the backend: aiohttp routes of docs/api.md, /healthz, /readyz, /metrics, the websocket."""
