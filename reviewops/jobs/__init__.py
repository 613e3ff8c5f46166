"""The scheduled jobs, one module each: `collect` (crawl the cinema sites), `score` (predictions for new
reviews), `train` (ingest → snapshot → train → register → gate), `monitor` (drift and agreement).

The CLI, the Airflow tasks (`reviewops.orchestration`) and `make demo` all call these functions; nothing
here knows about command lines or schedulers.
"""
