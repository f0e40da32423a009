"""The test bed's own recovery (testbed.py, Testbed.run), against fake_outer.py instead of
QEMU: an outer machine that panics or goes silent in a scenario costs a fresh machine and one
more try of that scenario only; a second loss fails it (rc "outer-crash") and the rest still
run; a guest triple fault reruns the scenario once unless it expects one; the budget and the
boot limit end a run that cannot finish, with the reason. Runs in seconds (ctest
linux.bed_recovery, label unit)."""
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import testbed  # noqa: E402

FAKE = pathlib.Path(__file__).resolve().parent / "fake_outer.py"


@pytest.fixture
def bed(tmp_path, monkeypatch):
    monkeypatch.setattr(testbed, "OUTER_BOOT_LIMIT", 3)
    monkeypatch.setattr(testbed, "SCENARIO_MARGIN", 1)
    monkeypatch.setattr(testbed, "GAP_LIMIT", 3)
    monkeypatch.delenv("VMM_LINUX_BUDGET", raising=False)
    monkeypatch.delenv("VMM_LINUX_FAULT", raising=False)
    monkeypatch.delenv("VMM_LINUX_TIMEOUT_SCALE", raising=False)

    def run(plan, names="abc", budget=None, expect_tf=(), retries=1):
        if budget:
            monkeypatch.setenv("VMM_LINUX_BUDGET", str(budget))
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        tb = testbed.Testbed(tmp_path)
        tb.results_img = tmp_path / "tb-out.img"
        tb.results_img.write_bytes(b"")
        tb.qemu_command = lambda interactive=False, cmdline_extra="": [
            sys.executable, str(FAKE), str(tmp_path / "plan.json"), str(state),
            "-append", cmdline_extra]
        events = []
        scenarios = [testbed.Scenario(n, "", timeout=1, expect_triple_fault=n in expect_tf)
                     for n in names]
        r = tb.run(scenarios, tmp_path / "console.log",
                   on_event=lambda kind, name, info: events.append((kind, name)),
                   crash_retries=retries)
        boots = int((state / "boot").read_text())
        return r, events, boots, (tmp_path / "console.log").read_text()
    return run


def rc(run, name):
    return run.scenarios.get(name, {}).get("rc")


def test_all_well_is_one_boot(bed):
    r, events, boots, _ = bed({})
    assert r.outer_ok and r.problem is None and boots == 1
    assert [rc(r, n) for n in "abc"] == [0, 0, 0]
    assert not any(v.get("retried") for v in r.scenarios.values())
    assert ("again", "a") not in events


def test_a_crash_reruns_that_scenario_only(bed):
    r, events, boots, console = bed({"b": ["crash", "ok"], "a": ["ok", "fail"]})
    assert r.outer_ok and boots == 2
    # a ran once (a second try would have failed); b failed first, then passed; c ran.
    assert [rc(r, n) for n in "abc"] == [0, 0, 0]
    assert len(r.scenarios["b"]["retried"]) == 1
    assert "Kernel panic" in r.scenarios["b"]["retried"][0]
    assert ("outer-lost", "b") in events and ("again", "b") in events
    assert "tb.only=b,c" in console or "@@TB-HOST boot 2: b c" in console
    assert r.result("b").retried and not r.result("a").retried


def test_a_silent_machine_is_given_up_on_and_replaced(bed):
    r, events, boots, _ = bed({"a": ["hang", "ok"]})
    assert r.outer_ok and boots == 2
    assert [rc(r, n) for n in "abc"] == [0, 0, 0]
    assert "said nothing for too long (in scenario a)" in r.scenarios["a"]["retried"][0]


def test_a_soft_lockup_gives_the_machine_up_at_once(bed, monkeypatch):
    monkeypatch.setattr(testbed, "SCENARIO_MARGIN", 60)  # the deadline alone would take 61 s
    start = testbed.time.monotonic()
    r, events, boots, _ = bed({"b": ["lockup", "ok"]})
    assert r.outer_ok and boots == 2 and testbed.time.monotonic() - start < 30
    assert [rc(r, n) for n in "abc"] == [0, 0, 0]
    assert "stuck (in scenario b)" in r.scenarios["b"]["retried"][0]
    assert "soft lockup - CPU#0 stuck for 52s" in r.scenarios["b"]["retried"][0]


def test_a_second_crash_fails_the_scenario_and_the_rest_runs(bed):
    r, events, boots, _ = bed({"b": ["crash"]})
    assert not r.outer_ok and boots == 3
    assert rc(r, "b") == "outer-crash" and rc(r, "a") == 0 and rc(r, "c") == 0
    assert "Kernel panic" in r.problem


def test_no_retries_means_the_first_crash_fails(bed):
    r, _, boots, _ = bed({"b": ["crash", "ok"]}, retries=0)
    assert rc(r, "b") == "outer-crash" and rc(r, "c") == 0 and boots == 2


def test_a_guest_triple_fault_reruns_once_and_the_rerun_is_judged(bed):
    r, events, boots, _ = bed({"c": ["tf", "fail"]})
    assert boots == 2 and rc(r, "c") == 1  # the rerun's result, not the first one's
    assert "triple-faulted" in r.scenarios["c"]["retried"][0]
    assert r.scenarios["c"]["tf"] == 0
    r2, _, boots2, _ = bed({"c": ["tf"]}, names="c")  # again a triple fault: no third run
    assert rc(r2, "c") == 0 and r2.scenarios["c"]["tf"] == 1


def test_a_guest_soft_lockup_reruns_and_two_retries_allow_two_reruns(bed):
    r, events, boots, _ = bed({"a": ["lk", "tf", "ok"], "c": ["lk", "fail"]}, retries=2)
    assert boots == 3 and rc(r, "a") == 0 and rc(r, "c") == 1
    assert len(r.scenarios["a"]["retried"]) == 2 and "stuck CPU" in r.scenarios["a"]["retried"][0]
    assert "triple-faulted" in r.scenarios["a"]["retried"][1]
    assert len(r.scenarios["c"]["retried"]) == 1  # a plain failure is never rerun


def test_an_expected_triple_fault_is_not_rerun(bed):
    r, events, boots, _ = bed({"c": ["tf", "fail"]}, expect_tf={"c"})
    assert boots == 1 and rc(r, "c") == 0 and not r.scenarios["c"].get("retried")


def test_a_machine_that_never_comes_up_fails_with_its_console(bed):
    r, events, boots, _ = bed({"boot": ["crash"]})
    assert not r.outer_ok and not any(rc(r, n) for n in "abc") and boots == 2
    assert "while booting" in r.problem


def test_a_lost_boot_is_tried_once_more(bed):
    r, events, boots, _ = bed({"boot": ["hang", "up"]})
    assert r.outer_ok and boots == 2 and [rc(r, n) for n in "abc"] == [0, 0, 0]


def test_the_budget_ends_the_run_with_its_reason(bed):
    r, events, boots, _ = bed({"b": ["hang"]}, budget=2)
    assert not r.outer_ok and "budget" in r.problem
    assert rc(r, "a") == 0 and rc(r, "b") == "unfinished" and rc(r, "c") is None
