"""The platform in real containers (`make test-containers`, run by CI): every image of the project built by
a real Docker Engine, the real docker-compose.yml brought up with `docker compose up -d --wait`, a whole
cycle through nginx, services killed mid-cycle, a restart that keeps every store, no secret in any image
or log. Third-party images (PostgreSQL, MinIO, Redis, Python) cannot be pulled here and are stood in for
by images built from Debian's packages (tests/containers/); the project's own images are the real ones.

The tests share one stack and run in file order: each starts from what the previous one left.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from reviewops.devtools.testsite import TestSite
from tests.containers.stack import PROJECT_SERVICES, Airflow, Engine, Stack, run, standins, wait

pytestmark = pytest.mark.containers
HEALTHY_SERVICES = ("postgres", "minio", "mlflow", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "api", "app", "nginx", "testsite")
ONE_SHOT = ("init", "minio-init")
TEXTS = ["정말 재밌어요 최고의 영화", "돈 아까운 최악의 영화"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("containers")
    with Engine(work):
        standins()
        s = Stack(work)
        s.down(volumes=True)  # what an earlier run may have left
        s.compose("build", timeout=3600)
        s.up()
        try:
            yield s
        finally:
            (work / "compose.log").write_text(s.compose("logs", "--no-color", check=False).stdout)
            s.down(volumes=True)


def _predict(stack: Stack) -> httpx.Response:
    return httpx.post(f"{stack.url}/api/v1/predict", json={"texts": TEXTS}, timeout=30)


def _crawled(stack: Stack) -> list[tuple[str, str]]:
    rows = stack.sql("reviews", "SELECT source, source_review_id FROM reviews WHERE source IN ('cgv', 'megabox')")
    return [(r[0], r[1]) for r in rows]


def _site_shows() -> set[tuple[str, str]]:
    """What the test site (the same code and sample, at its first day) shows, read here without a server."""
    site = TestSite()
    return {(source, str(r["id"])) for source in ("cgv", "megabox") for m in site.movies(source)
            for r in site.visible_reviews(source, m["code"])}


# --- the tests, in order ------------------------------------------------------------------------------


def test_every_service_is_healthy_by_its_own_healthcheck(stack):
    services = stack.services()
    for name in HEALTHY_SERVICES:
        assert services[name]["State"] == "running" and services[name]["Health"] == "healthy", services[name]
    for name in ONE_SHOT:
        assert services[name]["State"] == "exited" and services[name]["ExitCode"] == 0, services[name]


def test_only_nginx_publishes_ports_and_every_project_service_runs_as_non_root(stack):
    services = stack.services()
    published = {name for name, s in services.items() if any(p.get("PublishedPort") for p in s.get("Publishers") or [])}
    assert published == {"nginx"}
    for name in PROJECT_SERVICES:
        user = run(["docker", "inspect", "--format", "{{.Config.User}}", stack.container(name)]).stdout.strip()
        assert user and user.split(":")[0] not in ("0", "root"), (name, user)
    assert stack.exec("api", "id", "-u").strip() == "10001"


def test_the_gpu_profile_renders(stack):
    """Its CUDA image cannot be built here (the CUDA index is out of reach): the profile must still render."""
    config = stack.compose("--profile", "gpu", "config", "--format", "json").stdout
    services = json.loads(config)["services"]
    assert services["trainer-gpu"]["build"]["args"]["BASE_IMAGE"] == services["base-gpu"]["image"]
    assert "base-gpu" in services["trainer-gpu"]["depends_on"]


def test_runtime_images_carry_no_test_tools(stack):
    for tool in ("pytest", "moto", "schemathesis", "ruff", "hypothesis"):
        probe = run(["docker", "run", "--rm", "--entrypoint", "python", "reviewops/base:latest", "-c",
                     f"import importlib.util, sys; sys.exit(importlib.util.find_spec({tool!r}) is not None)"],
                    check=False)
        assert probe.returncode == 0, f"{tool} is installed in the runtime image"


def test_a_cycle_through_nginx_survives_a_killed_scheduler_and_api(stack):
    """Collect → train → gate → promote → score, triggered through Airflow's REST API behind nginx. The
    scheduler is killed while the crawl runs and the API while the model trains; compose brings both back,
    the cycle completes, every review the site shows is stored once, and no request fails once the API is
    back."""
    airflow = Airflow(stack)
    dags = airflow.http.get("/dags").json()["dags"]
    assert {d["dag_id"] for d in dags} >= {"reviews_collect", "sentiment_train"}
    trains_before = len(airflow.runs("sentiment_train"))
    versions_before = _versions(stack)
    collect = airflow.trigger("reviews_collect")
    wait("the crawl to start storing reviews", lambda: _crawled(stack), 300, every=1)
    run(["docker", "kill", stack.container("airflow-scheduler")])
    stack.up("airflow-scheduler")  # compose restarts it
    assert wait("reviews_collect", lambda: airflow.run_state("reviews_collect", collect) in ("success", "failed"),
                 900) and airflow.run_state("reviews_collect", collect) == "success"

    wait("sentiment_train to start", lambda: len(airflow.runs("sentiment_train")) > trains_before, 300)
    run(["docker", "kill", stack.container("api")])
    stack.up("api")
    train = wait("sentiment_train", lambda: airflow.finished("sentiment_train", trains_before), 1200)
    assert train["state"] == "success", train

    assert len(_versions(stack)) > len(versions_before), "the cycle registered no new model version"
    crawled = _crawled(stack)
    assert len(crawled) == len(set(crawled)), "a review was stored twice"
    assert set(crawled) == _site_shows(), "a review the site shows was not stored"

    wait("the API to serve the new champion", lambda: _predict(stack).json().get("model", {}).get("version")
          == _champion(stack), 180)
    failed = []
    for _ in range(100):  # within nginx's per-client rate (20/s): a 429 here would be the proxy, not the API
        if (answer := _predict(stack)).status_code != 200:
            failed.append(f"{answer.status_code}: {answer.text[:300]}")
        time.sleep(0.06)
    assert not failed, f"{len(failed)} of 100 requests failed; the first: {failed[0]}\n" + \
        stack.compose("logs", "--tail", "60", "api", check=False).stdout[-6000:]
    assert [p["label"] for p in _predict(stack).json()["predictions"]] == ["긍정", "부정"]


def _versions(stack: Stack) -> list[dict]:
    return httpx.get(f"{stack.url}/api/v1/models", timeout=30).json()["versions"]


def _champion(stack: Stack) -> str:
    return httpx.get(f"{stack.url}/api/v1/models", timeout=30).json()["champion"]


def test_the_app_answers_through_nginx_in_a_browser(stack, browser):
    from selenium.webdriver.common.by import By

    from tests.test_e2e import _button
    from tests.test_e2e import _wait as wait_for

    browser.get(f"{stack.url}/")
    area = wait_for(browser, lambda d: next((t for t in d.find_elements(By.TAG_NAME, "textarea") if t.is_displayed()),
                                            False), 120)
    area.click()
    area.send_keys(TEXTS[0])
    _button(browser, "분석하기").click()
    wait_for(browser, lambda d: "긍정" in " ".join(m.text for m in d.find_elements(
        By.CSS_SELECTOR, "[data-testid='stMetricValue']")))


def test_down_and_up_keep_every_store_and_a_new_image_migrates(stack):
    reviews = stack.sql("reviews", "SELECT count(*) FROM reviews")[0][0]
    champion = _champion(stack)
    runs = stack.sql("mlflow", "SELECT count(*) FROM runs")[0][0]
    dag_runs = {tuple(r) for r in stack.sql("airflow", "SELECT dag_id, run_id FROM dag_run")}
    stack.down()  # volumes kept
    stack.up()
    assert stack.sql("reviews", "SELECT count(*) FROM reviews")[0][0] == reviews
    assert stack.sql("mlflow", "SELECT count(*) FROM runs")[0][0] == runs
    # every run is kept; a schedule's tick while the stack was down may add one (06:00 KST: model_monitor)
    assert dag_runs <= {tuple(r) for r in stack.sql("airflow", "SELECT dag_id, run_id FROM dag_run")}
    assert _champion(stack) == champion
    wait("the API to serve the champion from its store", lambda: _predict(stack).status_code == 200, 180)

    # a changed image (a new version label on the base), then `up -d`: init runs again on it, migrations first
    before = run(["docker", "image", "inspect", "--format", "{{.Id}}", "reviewops/base:latest"]).stdout
    init_before = stack.container("init")
    stack.compose("build", "--build-arg", f"REVIEWOPS_VERSION=test-{time.time_ns()}", "init", timeout=1800)
    assert run(["docker", "image", "inspect", "--format", "{{.Id}}", "reviewops/base:latest"]).stdout != before
    stack.up()
    assert stack.container("init") != init_before and stack.services()["init"]["ExitCode"] == 0
    init_log = stack.compose("logs", "--no-color", "init").stdout
    assert re.search(r"review store: (schema up to date|upgraded)", init_log), init_log[-2000:]
    assert stack.sql("reviews", "SELECT count(*) FROM reviews")[0][0] == reviews
    assert _champion(stack) == champion


def test_no_secret_in_images_layers_or_logs(stack, tmp_path):
    logs = stack.compose("logs", "--no-color").stdout
    images = sorted({s["Image"] for s in stack.services().values() if s["Image"].startswith("reviewops/")})
    history = "".join(run(["docker", "history", "--no-trunc", image]).stdout for image in images)
    layers = tmp_path / "images.tar"
    run(["docker", "save", "-o", str(layers), *images], timeout=1800)
    in_layers = _found_in(layers, {name: value.encode() for name, value in stack.secrets.items()})
    layers.unlink()
    env = stack.env_file.read_text()
    for name, value in stack.secrets.items():
        assert value in env  # the check looks for the real values
        assert value not in logs, f"{name} is in the logs"
        assert value not in history, f"{name} is in an image's history"
    assert not in_layers, f"in an image layer: {in_layers}"


def _found_in(path, needles: dict[str, bytes], chunk: int = 64 * 2**20) -> set[str]:
    """Which needles occur in a (large) file, read a chunk at a time with an overlap."""
    found, overlap, tail = set(), max(len(n) for n in needles.values()), b""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            window = tail + block
            found |= {name for name, needle in needles.items() if needle in window}
            tail = window[-overlap:]
    return found
