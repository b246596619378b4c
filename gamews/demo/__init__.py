"""The demo: a simulated game server that speaks the real protocols on loopback."""
