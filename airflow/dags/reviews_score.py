"""reviews_score: when reviews_collect stored new reviews, or sentiment_train promoted a new champion,
score the reviews that have no prediction from the champion and store the predictions (idempotent: a
review is scored once per model version)."""

from airflow.sdk import Asset, dag, task

from reviewops import orchestration as flow


@dag(
    schedule=Asset(flow.NEW_REVIEWS) | Asset(flow.CHAMPION),
    **flow.dag_kwargs(__doc__, "score"),
)
def reviews_score():
    @task(outlets=[Asset(flow.SCORED_REVIEWS)])
    def score() -> dict:
        return flow.score_reviews()

    score()


reviews_score()
