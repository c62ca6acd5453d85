"""The HTTP lookup API: answers computed from the published snapshots (routing stays in function_app.py).

endpoint.py     what every route shares: GET only, the error boundary, the context, Cache-Control, links
handlers.py     /api/customers, /api/customers/{id}, /api/snapshots, /api/snapshots/{date}
changes.py      /api/changes: what changed in a date range, from the change records
history.py      /api/customers/{id}/history: when a customer was seen, and its events
records.py      the published chain of change records, each version read whole once
health.py       /api/health: anonymous, status only (and the guard's withheld snapshot)
openapi.py      /api/openapi.json (openapi.json, the API's contract)
csv_answer.py   ?format=csv answers and the whole snapshot's CSV rendition
errors.py       ApiError → the JSON error answer every route shares
params.py       query and route parameter validation
http.py         ETag / If-None-Match, gzip negotiation, Cache-Control, JSON answers
schedule.py     when the next snapshot can exist (NCRONTAB), for Cache-Control
latest.py       LatestCache: the warm instance's latest snapshot, checked, loaded once, swapped
loaded.py       the whole load of a snapshot (LoadedSnapshot), when latest.json names no usable index
indexed.py      the indexed read of a snapshot (IndexedSnapshot) through its stored index
sas.py          short-lived read-only SAS URLs for snapshots too large to answer inline
context.py      ApiContext: settings, storage client, caches and clock, built once per process
"""
