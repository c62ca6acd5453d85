"""The HTTP lookup API: answers computed from the published snapshots (routing stays in function_app.py).

errors.py    ApiError → the JSON error answer every route shares
params.py    query and route parameter validation
http.py      ETag / If-None-Match, gzip negotiation, Cache-Control, JSON answers
schedule.py  when the next snapshot can exist (NCRONTAB), for Cache-Control
text.py      case- and accent-folding for search, domain keys
latest.py    the warm-instance cache of the latest snapshot and its indexes
context.py   settings, storage client and cache per process, rebuilt when the settings change
handlers.py  one function per route: HttpRequest → HttpResponse, nothing escapes
"""
