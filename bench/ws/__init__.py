"""Side-by-side WebSocket benchmark: gamews against its peers (issue 7).

Run ``python -m bench.ws`` from the repository root."""
