"""HTTP transport under the app's own clients: the one owner of the HTTP library's use, of Retry-After and
of the bounds that keep a slow or hostile server from holding a run (layer: beside shared.storage; it
imports only base modules).

    adapters.py     the only module that imports the HTTP library: retries with a deadline
                    (DeadlineRetry) on one pooled session (RetryingSession), the connection a Watchdog
                    can cut, its exceptions in fixed words, its logs scrubbed
    bodies.py       read_body: a body within a size limit, a time budget and the caller's deadline
    post.py         one bounded POST attempt (post_once) and what came back (Answer)
    retry_after.py  retry_after_seconds: the one reading of a Retry-After header
    watchdog.py     cutting a socket whose time is up (Watchdog, shut_down)
"""
