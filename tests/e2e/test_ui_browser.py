"""The Prefect UI in a real browser: `synthloop ui`, then Run -> Custom run on loop/default.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright; no browser
download. The project copy keeps the default params.yaml, so the test types the
tiny profile's values into the form (every field that differs) and picks a
non-default strategy. Screenshots go to the test's tmp dir; with SYNTHLOOP_WRITE_SCREENSHOTS=1 also to
docs/img/ (the README's pictures).
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from synthloop.config import flatten, load_params
from tests.conftest import REPO
from tests.ui_proc import UiProcess, artifacts, mlflow_loop_run, wait_final

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DOCS = REPO / "docs" / "img"
STRATEGY = "accumulate"


@pytest.fixture(autouse=True)
def _chromium():
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: `apt-get install -y chromium` (.ci/run does)")


@contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            b.close()


def loop_deployment():
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name("loop/default")


def open_custom_run(page, ui: UiProcess):
    """Deployments -> loop/default -> Run -> Custom run; returns the deployment."""
    dep = loop_deployment()
    page.goto(f"{ui.url}/deployments")
    page.locator(f'a[href="/deployments/deployment/{dep.id}"]').first.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.get_by_role("button", name="Submit").wait_for()
    page.get_by_text("Real Fraction", exact=True).wait_for()  # the form is rendered
    return dep


def flow_run_ids() -> set:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return {r.id for r in client.read_flow_runs()}


PROBLEM = re.compile(r"error|wrong|invalid|required|must|greater|less than", re.I)


def new_flow_run(before: set, page, ui: UiProcess, timeout: float = 180):
    """The flow run the form just created. The UI goes back to the deployment page only once the
    server has answered its POST, which on a loaded machine can take over a minute; when no run
    appears, the failure carries the UI's toasts (an error the server sent) and the server's log."""
    deadline = time.monotonic() + timeout
    while not (new := flow_run_ids() - before):
        if time.monotonic() > deadline:
            toasts = [t for t in dict.fromkeys(page.locator("[class*=toast]").all_inner_texts()) if t]
            said = [line for line in page.inner_text("body").splitlines() if PROBLEM.search(line)]
            raise AssertionError(
                f"the form created no flow run in {timeout:.0f} s (page {page.url}); toasts: {toasts}; "
                f"form messages: {said}\n{ui.logs()}"
            )
        time.sleep(0.5)
    assert len(new) == 1, new
    return new.pop()


def _label(text: str):
    return re.compile(rf"^{re.escape(text)}( \(Optional\))?$")


def field(page, section: str, title: str):
    """The form property `title` inside the group of params section `section`."""
    group = (
        page.locator(".schema-form-property")
        .filter(has=page.locator(".schema-form-property__label", has_text=_label(section)))
        .first
    )
    return (
        group.locator(".schema-form-property")
        .filter(has=page.locator(".schema-form-property__label", has_text=_label(title)))
        .last
    )


def set_value(page, schema: dict, section: str, key: str, value) -> None:
    """Type a value the way a user does: a number/text box, or a dropdown for a Literal."""
    from playwright.sync_api import expect

    definition = schema["definitions"][schema["properties"][section]["$ref"].split("/")[-1]]
    spec = definition["properties"][key]
    prop = field(page, section, spec["title"])
    if "enum" in spec:
        shown = prop.locator(".p-select-button__value")
        for attempt in range(3):  # the list re-renders while it opens; a click can land on the old one
            prop.locator("button.p-select-button__control").focus()
            page.keyboard.press("ArrowDown")  # opens the option list (a click does not, headless)
            page.get_by_role("option", name=str(value), exact=True).click()
            try:
                expect(shown).to_have_text(str(value), timeout=5_000)
                break
            except AssertionError:
                if attempt == 2:
                    raise
    else:
        prop.locator("input, textarea").first.fill(str(value))


def form_changes(default: dict, wanted: dict) -> dict[tuple[str, str], object]:
    """(section, key) -> value for every form field where `wanted` differs from the defaults."""
    changes = {}
    for section, values in wanted.items():
        for key, value in values.items():
            if default[section][key] != value:
                assert not isinstance(value, (list, dict)), f"{section}.{key}: only scalar fields are typed"
                changes[(section, key)] = "" if value is None else value
    return changes


def tiny_form() -> tuple[dict, dict]:
    """The form values of profiles/tiny.yaml with mix.strategy = STRATEGY, and of the defaults."""
    from synthloop.forms import to_form

    tiny = load_params(REPO / "profiles" / "tiny.yaml")
    tiny = tiny.model_copy(update={"mix": tiny.mix.model_copy(update={"strategy": STRATEGY})})
    as_dicts = lambda p: {k: v.model_dump() for k, v in to_form(p).items()}  # noqa: E731
    return as_dicts(load_params(REPO / "params.yaml")), as_dicts(tiny)


def shot(page, name: str, tmp_path: Path, docs: bool = True) -> None:
    """A screenshot in the test's tmp dir and, when asked (SYNTHLOOP_WRITE_SCREENSHOTS=1), in docs/img/."""
    page.screenshot(path=str(tmp_path / name), full_page=False)
    assert (tmp_path / name).stat().st_size > 10_000
    if docs and os.environ.get("SYNTHLOOP_WRITE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / name), full_page=False)


def test_custom_run_from_the_form_leaves_mlflow_dvc_and_prefect_records(ui, tmp_path):
    default, wanted = tiny_form()
    changes = form_changes(default, wanted)
    assert ("mix", "strategy") in changes and ("loop", "generations") in changes
    with browser() as page:
        dep = open_custom_run(page, ui)
        for (section, key), value in changes.items():
            set_value(page, dep.parameter_openapi_schema, section, key, value)
        field(page, "mix", "Strategy").scroll_into_view_if_needed()
        shot(page, "ui_form.png", tmp_path)
        before = flow_run_ids()
        clicked = time.monotonic()
        page.get_by_role("button", name="Submit").click()
        flow_run_id = str(new_flow_run(before, page, ui))
        page.wait_for_url(re.compile(rf".*/deployments/deployment/{dep.id}(\?.*)?$"))  # back on the deployment
        run = wait_final(flow_run_id, timeout=600)
        first = time.monotonic() - clicked
        assert run.state.is_completed(), f"{run.state.name}: {run.state.message}\n{ui.logs()}"
        page.goto(f"{ui.url}/flow-runs/flow-run/{flow_run_id}")
        page.get_by_text("Completed").first.wait_for()
        page.get_by_text("Artifacts").first.click()
        page.get_by_text("collapse-plot").first.wait_for()
        shot(page, "ui_run.png", tmp_path)

    # the values reached the run: Prefect's record of it, then MLflow, then DVC
    assert run.parameters["mix"]["strategy"] == STRATEGY and run.parameters["train"]["steps"] == 30
    tiny = load_params(REPO / "profiles" / "tiny.yaml")
    client, loop = mlflow_loop_run(ui.store, flow_run_id)
    expected = {k: str(v) for k, v in flatten(tiny).items() if not k.startswith("data.")}
    expected["mix.strategy"] = STRATEGY
    assert {k: loop.data.params[k] for k in expected} == expected
    assert [m.step for m in client.get_metric_history(loop.info.run_id, "test_ppl")] == [0, 1, 2]
    assert loop.data.tags["prefect.flow_run_url"].endswith(f"/flow-runs/flow-run/{flow_run_id}")
    workspace = Path(loop.data.tags["synthloop.dvc_workspace"])
    assert workspace == ui.project / ".synthloop" / "runs" / flow_run_id
    assert {a.path for a in client.list_artifacts(loop.info.run_id, "dvc")} == {"dvc/dvc.lock", "dvc/params.yaml"}

    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    assert {"prepare", "mix0", "train0", "evaluate0", "generate@2", "train@2", "report"} <= set(lock)
    assert lock["mix@1"]["params"]["params.yaml"]["mix.strategy"] == STRATEGY
    assert all(out.get("md5") for stage in lock.values() for out in stage["outs"])
    assert (ui.project / ".dvc" / "cache" / "runs").is_dir()  # the project's shared cache holds the run-cache

    arts = artifacts(flow_run_id)
    assert {
        "loop-progress",
        "generation-0",
        "generation-1",
        "generation-2",
        "summary",
        "collapse-plot",
        "dvc-record",
        "mlflow-run",
    } <= set(arts)
    assert arts["loop-progress"].data == 100.0
    assert "data:image/png;base64," in arts["collapse-plot"].data
    assert (
        f"({ui.mlflow_url}/#/experiments/{loop.info.experiment_id}/runs/{loop.info.run_id})" in arts["mlflow-run"].data
    )

    # the same values again: every stage comes back from DVC's run-cache
    from prefect.deployments import run_deployment

    started = time.monotonic()
    again = run_deployment("loop/default", parameters=run.parameters, timeout=0)
    again = wait_final(again.id, timeout=300)
    repeat = time.monotonic() - started
    assert again.state.is_completed(), again.state.message
    restored = re.search(r"Restored from DVC's run-cache: (.*)\.", artifacts(again.id)["dvc-record"].data).group(1)
    assert set(restored.split(", ")) == set(lock)  # all 15 stages, none recomputed
    timings = {"tiny_click_to_completed_s": round(first, 1), "repeat_identical_s": round(repeat, 1)}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    print(f"\nUI timings: {timings}")


def test_out_of_range_value_is_refused_before_a_run_exists(ui, tmp_path):
    before = flow_run_ids()
    with browser() as page:
        open_custom_run(page, ui)
        field(page, "mix", "Real Fraction").locator("input").fill("1.5")
        page.get_by_role("button", name="Submit").click()
        error = page.get_by_text(re.compile(r"real_fraction.*1\.5 is greater than the maximum of 1")).first
        error.wait_for()
        shot(page, "ui_refused.png", tmp_path, docs=False)
        assert "/run" in page.url  # still on the form
    assert flow_run_ids() == before
