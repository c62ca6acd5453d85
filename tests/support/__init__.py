"""Helpers the tests share, none of them a test: `functions` (the registered functions, invoked as the host
does), `api` (HTTP calls, answers, snapshots in the job's layout), `job` (what a run left behind), `changes`
(nights of changes, history and changes calls), `events` (the events queue and outbox), `teams` (Teams
cards), `index` (index blobs, built and changed), `openapi` (answers against the OpenAPI document),
`settings` (minimal settings), `bicep` (the infra/ scanner) and `paths` (where the repository is)."""
