"""model_monitor: every day at 06:00 (Asia/Seoul), compare the last day's reviews with the champion's
training snapshot (length, vocabulary, prediction mix, confidence) and check predictions against the
reviewers' own ratings; store the report and alert Slack when a threshold is crossed."""

from airflow.sdk import dag, get_current_context, task

from reviewops import orchestration as flow


@dag(
    schedule=flow.korean_cron("0 6 * * *"),
    **flow.dag_kwargs(__doc__, "monitor"),
)
def model_monitor():
    @task
    def check_drift() -> dict:
        ctx = get_current_context()
        return flow.monitor(until=ctx["dag_run"].run_after)

    check_drift()


model_monitor()
