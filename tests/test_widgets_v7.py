"""The notebook app under ipywidgets 7, Colab's version: tests/test_widgets.py run in a fresh environment where
ipywidgets 7 (installed into it) shadows the project's ipywidgets 8, with i2l imported from this repository."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO
from envs import EXPECT_IPYWIDGETS_ENV, fresh_env, output

#: Colab's ipywidgets is 7.7; the newest 7.x is what pip picks here.
IPYWIDGETS_7 = "ipywidgets>=7.7,<8"
#: The tests of tests/test_widgets.py that must pass (not be skipped) under ipywidgets 7: the version check, the
#: upload through set_upload and through the browser's messages (each compared with the Predictor's answer), the pad.
MUST_PASS = ("test_the_expected_ipywidgets_version", "test_nothing_uploaded_then_set_upload",
             "test_upload_as_the_browser_sends_it", "test_upload_and_predict", "test_drawpad_as_the_browser_sends_it",
             "test_drawing_and_predict")


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test name (parameters included) -> 'passed', 'skipped', 'failed' or 'error', from a JUnit XML report."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        outcome = "failed" if "failure" in tags else "error" if "error" in tags else \
            "skipped" if "skipped" in tags else "passed"
        outcomes[case.get("name")] = outcome
    return outcomes


@pytest.mark.slow
def test_the_app_under_ipywidgets_7(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    env.pip_install(IPYWIDGETS_7)
    r = env.run("-c", "import ipywidgets, i2l")
    assert r.returncode != 0 and "No module named 'i2l'" in r.stderr, output(r)  # i2l only through PYTHONPATH below
    r = env.run("-c", "import ipywidgets; print(ipywidgets.__version__); print(ipywidgets.__file__)")
    assert r.returncode == 0, output(r)
    version, location = r.stdout.split()
    assert version.startswith("7.") and Path(location).resolve().is_relative_to(env.site_packages.resolve()), r.stdout

    report = tmp_path / "junit.xml"
    r = env.run("-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", f"--junitxml={report}",
                REPO / "tests" / "test_widgets.py", timeout=600,
                PYTHONPATH=str(REPO), **{EXPECT_IPYWIDGETS_ENV: "7"})
    assert r.returncode == 0, f"tests/test_widgets.py failed under ipywidgets {version}:\n{output(r)}"
    outcomes = junit_outcomes(report)
    assert outcomes and set(outcomes.values()) == {"passed"}, outcomes  # nothing skipped under 7
    for name in MUST_PASS:
        assert outcomes.get(name) == "passed", (name, outcomes)
    env.assert_host_untouched()
