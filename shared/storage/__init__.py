"""Everything the app stores, and the only code that talks to Blob Storage.

layout    every blob name and prefix of the snapshot container (latest.json, snapshots and what sits beside
          them, the outbox, the run lock, withheld.json)
reader    the one bounded, verifying reader of stored documents: small JSON documents (latest.json,
          .published markers, outbox records, withheld.json) and line-oriented ones (snapshots,
          change records), gunzipped in bounded steps
"""
