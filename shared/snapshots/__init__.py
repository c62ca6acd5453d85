"""Snapshot blobs.

document  the snapshot document's layout, read back one customer line at a time
index     the lookup index written beside each snapshot, and its reader
manifest  what latest.json and the .published markers say about a published snapshot
store     the snapshot container's own steps: new snapshots, publishing latest.json, markers, listings
writer    the streaming writer of one snapshot (and its index), committed whole after the last page
"""
