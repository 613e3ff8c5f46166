"""sentiment_train: weekly (Sunday 03:00 Asia/Seoul), and earlier when enough new labelled reviews
arrived (REVIEWOPS_RETRAIN_MIN_NEW_LABELS): snapshot → train → evaluate → register → gate → promote
or keep → Slack. The CPU model always trains; with REVIEWOPS_TRANSFORMER_QUEUE set, the transformer
is fine-tuned on that queue's GPU worker too, and each candidate goes through the gate."""

from airflow.sdk import Asset, AssetOrTimeSchedule, chain, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from reviewops import orchestration as flow

GPU_QUEUE = flow.settings().transformer.queue


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=flow.korean_cron("0 3 * * 0"), assets=[Asset(flow.NEW_REVIEWS)]
    ),
    **flow.dag_kwargs(__doc__, "train"),
)
def sentiment_train():
    @task.short_circuit
    def due() -> bool:
        verdict = flow.train_due(get_current_context()["dag_run"].run_type)
        print(verdict["reason"])
        return verdict["due"]

    @task
    def snapshot() -> str:
        return flow.take_snapshot()["snapshot_id"]

    @task
    def train(snapshot_id: str, trainer: str = "baseline") -> str:
        return flow.train(snapshot_id, trainer)

    @task
    def gate(training_run: str) -> dict:
        return flow.register_and_gate(training_run)

    @task
    def report(summary: dict) -> None:
        flow.report_training(summary)

    @task(outlets=[Asset(flow.CHAMPION)])
    def announce(summary: dict) -> None:
        if not summary["decision"]["promote"]:
            raise AirflowSkipException(f"v{summary['version']} stays challenger: the champion is unchanged")

    snap = snapshot()
    due() >> snap
    candidates = [("cpu", train(snap))]
    if GPU_QUEUE:
        gpu_train = train.override(task_id="train_transformer", queue=GPU_QUEUE)
        candidates.append(("transformer", gpu_train(snap, "transformer")))
    gates = []
    for name, training_run in candidates:
        gated = gate.override(task_id=f"gate_{name}")(training_run)
        report.override(task_id=f"report_{name}")(gated)
        announce.override(task_id=f"announce_{name}")(gated)
        gates.append(gated)
    chain(*gates)  # candidates meet the gate one after the other

sentiment_train()
