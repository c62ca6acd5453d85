"""Reading what the app stored, within bounds.

reader    the one bounded, verifying reader of stored documents: small JSON documents (latest.json,
          .published markers, outbox records, withheld.json) and line-oriented ones (snapshots,
          change records), gunzipped in bounded steps
"""
