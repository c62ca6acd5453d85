"""What changed between published snapshots: the change record (record.py), its blob (store.py)."""
