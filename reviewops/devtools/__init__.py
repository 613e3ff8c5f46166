"""Development and demo tools: not part of the product; only their own commands import them.

* `testsite`: a local imitation of the CGV and Megabox review sites (`reviewops testsite`), with its
  pages and script as files under `templates/`;
* `slack_standin`: a local stand-in for Slack's API that shows every message (`reviewops slack-standin`);
* `launcher`: the whole platform on one machine without Docker (`reviewops up`, `make up`);
* `demo`: the daily cycle on embedded defaults through the DAGs (`make demo`);
* `render`: the test site's and the stand-in's pages, `templates/*` filled in with `string.Template`.
"""
