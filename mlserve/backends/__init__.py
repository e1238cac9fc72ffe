"""Gateway backends: one module per gateway behind the protocol in base.py."""
