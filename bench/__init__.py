"""`python -m bench` (`make bench`): how close the snapshot job gets to the network's limit, and how fast
lookups are.

Not part of CI (tests/project/test_bench_smoke.py runs `--quick` with tiny sizes). Every figure comes from
one run on the current machine against the devstack stand-ins on loopback; the job and the naive client run
in child processes (bench.child) so they never share a GIL with the stand-ins.
"""
