"""Snapshot blobs.

document.py       the snapshot document's layout, read back one customer line at a time
index.py          the lookup index written beside each snapshot, and its reader
manifest.py       what latest.json and the .published markers say about a published snapshot
store.py          the snapshot container's own steps: new snapshots, publishing latest.json, markers, listings
writer.py         the streaming writer of one snapshot (and its index), committed whole after the last page
index_builder.py  IndexBuilder: the index built and staged as the writer stores the snapshot
search.py         the index's search text, held compressed in chunks and searched one chunk at a time
"""
