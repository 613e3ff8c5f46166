"""reviews_collect: every day at 01:00 (Asia/Seoul), crawl CGV and Megabox, one mapped task per
source × movie now playing, then close the batches, report to Slack and update the new-reviews Asset.

Thin on purpose: every task is one call into the Airflow adapter `reviewops.orchestration`, which calls
the job in `reviewops.jobs.collect`.
"""

from airflow.sdk import Asset, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from reviewops import orchestration as flow

NEW_REVIEWS = Asset(flow.NEW_REVIEWS)


@dag(
    schedule=flow.korean_cron("0 1 * * *"),
    **flow.dag_kwargs(__doc__, "collect"),
)
def reviews_collect():
    @task
    def open_batches() -> list[dict]:
        return flow.open_collection()

    @task
    def movies(batches: list[dict]) -> list[dict]:
        return flow.collection_targets(batches)

    # politeness holds across these parallel tasks: they take turns per host through a lock file
    @task(max_active_tis_per_dagrun=4,
          map_index_template="{{ task.op_kwargs['source'] }}/{{ task.op_kwargs['code'] }}")
    def crawl_movie(source: str, code: str, batch_id: int, title: str | None = None) -> dict:
        return flow.collect_movie(source, code, batch_id, title)

    @task(trigger_rule="all_done", outlets=[NEW_REVIEWS])
    def close_batches(batches: list[dict], results) -> dict:
        summary = flow.close_collection(batches, results)
        if summary["new"] == 0:
            raise AirflowSkipException("no new reviews: nothing downstream to do")
        return summary

    batches = open_batches()
    close_batches(batches, crawl_movie.expand_kwargs(movies(batches)))


reviews_collect()
