"""Stands in for `python -m ml.lifecycle.pipeline` in the app's retrain tests: records one
`pipeline` job run the way the pipeline does (who started it comes from the environment), then
exits 0."""

from db.ops import job_run

with job_run("pipeline") as run:
    run.note("stand-in run")
