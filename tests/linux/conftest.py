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
AGAIN = []  # (scenario, why): scenarios run again after the test bed failed under them


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
            TIMES.append((f"(outer boot {info['boot']})", "", info["secs"]))
        elif kind == "end":
            TIMES.append((name, info["rc"], info["secs"]))
        elif kind == "outer-lost":
            TIMES.append((f"(outer lost in {name or 'no scenario'})", "lost", info["secs"]))
            if name is None:
                AGAIN.append(("(outer machine, between scenarios)", info["why"]))
        elif kind == "again":
            AGAIN.append((name, info["why"]))

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
    for why in res.retried:
        print(f"scenario {s.name}: run again: {why}")
    if res.rc == "outer-crash":
        pytest.fail(f"scenario {s.name}: the outer machine was lost in every try; the last: "
                    f"{res.why}\n" + res.report(), pytrace=False)
    if res.rc in ("unfinished", "timeout"):
        why = testbed_run.problem if res.rc == "unfinished" else "its time limit killed it"
        pytest.fail(f"scenario {s.name} did not finish: {why}\n" + res.report(), pytrace=False)
    return res


def pytest_terminal_summary(terminalreporter):
    if TIMES:
        terminalreporter.section("real-Linux scenarios (outer machine time)")
        for name, rc, secs in TIMES:
            terminalreporter.write_line(f"  {name:24} {str(rc):>4} {secs:7.1f}s")
    if AGAIN:
        # The test bed's own failures (TCG's nested SVM), said even when the rerun passed.
        terminalreporter.section("scenarios run again (the second run is the one judged)")
        for name, why in AGAIN:
            terminalreporter.write_line(f"  {name}: {why}")
