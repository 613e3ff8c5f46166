"""Slack reports through slack-sdk: a bot token and channel, or an incoming webhook.

Messages are Block Kit. With neither configured the message is logged and nothing fails; a Slack
that is down or refuses the message is logged too: a report never breaks the job it reports on.
Tokens and webhook URLs never appear in logs or errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reviewops.config import Settings
from reviewops.evaluate.behaviour import summary_line

log = logging.getLogger(__name__)
# slack-sdk logs request URLs (a webhook URL is a secret) at DEBUG and INFO: its clients get a silent
# logger, and what went wrong is logged below without them. The logger is made directly, outside the
# logging registry, so no later logging configuration (MLflow's, Airflow's) can switch it back on.
_sdk_log = logging.Logger(f"{__name__}.sdk", level=logging.CRITICAL + 1)  # noqa: LOG001 - on purpose


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _fields(pairs: list[tuple[str, str]]) -> dict:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in pairs]}


def training_report(summary: dict, mlflow_url: str | None = None) -> tuple[str, list[dict]]:
    """(fallback text, blocks) for a train summary (`TrainResult.summary()` or the pipeline's `train`)."""
    m, d = summary["metrics"], summary["decision"]
    verdict = "promoted to champion" if d["promote"] else "kept as challenger"
    delta = f"{d['candidate'] - d['champion']:+.4f}" if d.get("champion") is not None else "first model"
    text = f"review-sentiment v{summary['version']}: {d['metric']} {d['candidate']:.4f}, {verdict}"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Training report: version {summary['version']}"}},
        _fields([(d["metric"], f"{d['candidate']:.4f}"), ("vs champion", delta),
                 ("F1 / ROC-AUC", f"{m.get('f1', float('nan')):.4f} / {m.get('roc_auc', float('nan')):.4f}"),
                 ("eval reviews", f"{int(m.get('n', 0)):,}"), ("snapshot", summary.get("snapshot_id", "")),
                 ("decision", verdict)]),
        _section(f"*Why:* {d['reason']}"),
    ]
    hard_cases = summary_line(m)
    if hard_cases:  # the hand-written hard cases (negation, sarcasm, ...), weakest category first
        blocks.append(_section(f"*Behavioural set:* {hard_cases}"))
    if mlflow_url:
        blocks.append(_section(f"<{mlflow_url.rstrip('/')}/#/experiments/runs/{summary['run_id']}|MLflow run>"))
    return text, blocks


def collection_summary(results: list[dict]) -> tuple[str, list[dict]]:
    """(text, blocks) for crawl results (dicts with source, status, new, fetched, movies_failed, errors)."""
    new = sum(r["new"] for r in results)
    text = f"Review collection: {new:,} new reviews"
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": text}}]
    for r in results:
        blocks.append(_fields([(r["source"], r["status"]), ("new / fetched", f"{r['new']:,} / {r['fetched']:,}"),
                               ("failed movies", str(r.get("movies_failed", 0)))]))
        if r.get("errors"):
            blocks.append(_section("\n".join(f"• {e}" for e in r["errors"][:5])))
    return text, blocks


def failure(dag: str, task: str, error: str, log_url: str | None = None) -> tuple[str, list[dict]]:
    text = f"Failed: {dag}.{task}: {error.splitlines()[0][:300] if error else 'unknown error'}"
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": f"Task failed: {dag}.{task}"}},
              _section(f"```{(error or '')[:1500]}```")]
    if log_url:
        blocks.append(_section(f"<{log_url}|Task log>"))
    return text, blocks


@dataclass
class Notifier:
    settings: Settings

    @property
    def mode(self) -> str:
        s = self.settings
        if s.slack.bot_token and s.slack.bot_token.get_secret_value():
            return "bot"
        if s.slack.webhook_url and s.slack.webhook_url.get_secret_value():
            return "webhook"
        return "log"

    def send(self, text: str, blocks: list[dict]) -> bool:
        """Post the message; True when Slack accepted it. Never raises."""
        s = self.settings
        try:
            if self.mode == "bot":
                from slack_sdk import WebClient

                client = WebClient(token=s.slack.bot_token.get_secret_value(),
                                   base_url=s.slack.api_url or "https://slack.com/api/", timeout=10, logger=_sdk_log)
                resp = client.chat_postMessage(channel=s.slack.channel, text=text, blocks=blocks)
                return bool(resp.get("ok"))
            if self.mode == "webhook":
                from slack_sdk.webhook import WebhookClient

                hook = WebhookClient(s.slack.webhook_url.get_secret_value(), timeout=10, logger=_sdk_log)
                resp = hook.send(text=text, blocks=blocks)
                if resp.status_code != 200:
                    log.warning("slack webhook refused the message: HTTP %s", resp.status_code)
                return resp.status_code == 200
        except Exception as exc:  # noqa: BLE001 - a report must never break the job it reports on
            log.warning("slack message not sent (%s): %s", type(exc).__name__, text)
            return False
        log.info("slack not configured; message: %s", text)
        return False


def drift_alert(report: dict, report_uri: str | None = None) -> tuple[str, list[dict]]:
    """(fallback text, blocks) for a `reviewops.monitor.drift_report`: one fields section per crossed check."""
    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    crossed = [c for c in report.get("checks", []) if c.get("crossed")]
    names = [c["name"] for c in crossed]
    counts = f"{report.get('n_current', 0):,} recent vs {report.get('n_reference', 0):,} reference reviews"
    if report.get("status") == "insufficient_data":
        title = "Model monitor: not enough recent reviews"
    elif names == ["agreement"]:
        title = "Model monitor: agreement below threshold"
    elif names:
        title = "Model monitor: drift"
    else:
        title = "Model monitor: no drift"
    text = f"{title}: {', '.join(names)} ({counts})" if names else f"{title} ({counts})"
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}}, _section(counts)]
    for c in crossed:
        value = num(c.get("value"))
        if c.get("reference") is not None:
            value += f" vs reference {num(c['reference'])}"
        pairs = [(c["name"], value), ("threshold", num(c.get("threshold")))]
        if c.get("n_labelled") is not None:
            pairs.append(("labelled reviews", f"{c['n_labelled']:,}"))
        blocks.append(_fields(pairs))
        if c.get("detail"):
            blocks.append(_section(c["detail"]))
    if report_uri:
        link = f"<{report_uri}|Drift report>" if report_uri.startswith(("http://", "https://")) else f"`{report_uri}`"
        blocks.append(_section(f"*Report:* {link}"))
    return text, blocks
