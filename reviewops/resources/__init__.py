"""Files the library ships beside its code, found with `importlib.resources` in a checkout and in a wheel.

In the checkout each entry here is a symbolic link to the top-level folder that holds the files, where
docker compose and the Dockerfiles use them; building the wheel copies the files in:

* `dags/` → `airflow/dags/`: the Airflow DAGs (Airflow's DAGs folder points here);
* `nginx/` → `nginx/`: `nginx.conf.template`, the reverse proxy's configuration;
* `streamlit/` → `streamlit/`: the app (`app.py`) and its pages (`views/*.py`);
* `sample/` → `data/sample/`: `reviews.sample.jsonl.gz`, the bundled sample corpus.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from reviewops.errors import ConfigError


def resource(*parts: str) -> Path:
    """The installed file or folder `parts` under this package, as a real path (nginx, Airflow and
    Streamlit read it themselves). Symbolic links are resolved, so a checkout reports the folder where
    the file lives (`airflow/dags`, not `reviewops/resources/dags`)."""
    path = Path(str(files(__name__).joinpath(*parts))).resolve()
    if not path.exists():
        raise ConfigError(f"package data missing: {path} (reinstall reviewops)")
    return path


def dags_folder() -> Path:
    return resource("dags")


def nginx_template() -> Path:
    return resource("nginx", "nginx.conf.template")


def streamlit_app() -> Path:
    return resource("streamlit", "app.py")


def sample_corpus() -> Path:
    return resource("sample", "reviews.sample.jsonl.gz")
