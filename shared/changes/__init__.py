"""What changed between published snapshots, and who is told.

record.py        the change record: the comparison of a run's customers with the previous snapshot's
store.py         the change record's blob: written once, read back line by line
guard.py         the completeness guard: a large drop is withheld, not published (withheld.json)
outbox.py        the outbox record of a published (or withheld) snapshot: what is still to be delivered
outbox_blobs.py  the outbox's blobs as the sender reads, advances, deletes and sets them aside
cloudevents.py   one CloudEvents 1.0 event per change, with a stable id, and its smaller forms
events.py        the sender: the outbox drained to the events queue (and the notification channels)
"""
