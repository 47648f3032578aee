"""The HTTP face of the backend: aiohttp routes of API.md, /healthz, /readyz, /metrics, the websocket."""
