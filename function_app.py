"""Azure Functions entry point: declares the triggers, nothing else.

Imports of shared.* happen inside the handlers so that the host indexes this file fast and an import
problem shows as a failed invocation with a message, not as "no job functions found".
"""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%SNAPSHOT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def snapshot_customers(timer: func.TimerRequest) -> None:
    """Nightly: every Partner Center customer into a dated snapshot blob, then latest.json."""
    from shared.job import run_snapshot

    run_snapshot(past_due=timer.past_due)
