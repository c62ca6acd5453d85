"""Snapshot blobs: the streaming writer (writer.py) and the container layout (store.py)."""
