"""pytest glue of the real-Linux test bed (testbed.py): every selected test's scenario runs
in one boot of the outer machine, before the first test asks for its result."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import testbed  # noqa: E402

SELECTED = []
TIMES = []


def pytest_configure(config):
    config.addinivalue_line("markers", "asan: also run with the ASan/UBSan vmm (ctest: -m asan)")


def pytest_collection_finish(session):
    for item in session.items:
        s = getattr(getattr(item, "function", None), "tb_scenario", None)
        if s is not None and s.name not in [x.name for x in SELECTED]:
            SELECTED.append(s)


def problem(msg):
    """No QEMU, no package, no outer boot: a failure in CI, a skip elsewhere."""
    if testbed.is_ci() or os.environ.get("VMM_REQUIRE_KVM") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def testbed_run():
    work = testbed.BUILD_DIR / "linux-testbed"
    tb = testbed.Testbed(work, log=lambda m: print(m, file=sys.stderr))
    try:
        tb.prepare(SELECTED)
    except testbed.TestbedError as e:
        problem(f"the real-Linux test bed cannot be built: {e}")

    def event(kind, name, info):
        if kind == "outer-up":
            TIMES.append(("(outer boot)", "", info["secs"]))
        elif kind == "end":
            TIMES.append((name, info["rc"], info["secs"]))

    run = tb.run(SELECTED, work / "outer-console.log", on_event=event)
    if not run.outer_ok and not run.scenarios:
        pytest.fail(f"{run.problem}\n--- outer console ({work / 'outer-console.log'})\n"
                    f"{testbed.console_tail(run.console)}", pytrace=False)
    return run


@pytest.fixture
def linux(request, testbed_run):
    s = request.function.tb_scenario
    res = testbed_run.result(s.name)
    if s.name not in testbed_run.scenarios:
        pytest.fail(f"scenario {s.name} did not run: {testbed_run.problem}\n--- outer console\n"
                    f"{testbed.console_tail(testbed_run.console)}", pytrace=False)
    print(f"scenario {s.name}: outer rc={res.rc}, {res.secs}s")
    if res.rc in ("unfinished", "timeout"):
        why = testbed_run.problem if res.rc == "unfinished" else "its time limit killed it"
        pytest.fail(f"scenario {s.name} did not finish: {why}\n" + res.report(), pytrace=False)
    return res


def pytest_terminal_summary(terminalreporter):
    if TIMES:
        terminalreporter.section("real-Linux scenarios (outer machine time)")
        for name, rc, secs in TIMES:
            terminalreporter.write_line(f"  {name:24} {str(rc):>4} {secs:7.1f}s")
