"""Application package of the Partner Center customer snapshot function app.

Everything the triggers in function_app.py do lives here; nothing here imports function_app, tests,
devstack or bench.
"""
