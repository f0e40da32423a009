#!/usr/bin/env python3
"""A stand-in for QEMU's outer machine, for test_bed_recovery.py: prints the markers the real
outer/init prints, following a plan, so Testbed.run's handling of machines that die, go silent
or see a guest triple-fault is tested in seconds, without TCG.

    fake_outer.py PLAN STATE -append "... tb.only=A,B ..."

PLAN is a JSON file {"boot": [ACTION per boot], "NAME": [ACTION per try]}; the Nth boot and
the Nth try of a scenario take the Nth action (the last one repeats), counted in the
directory STATE. Boot actions: "up", "crash" (the kernel dies before outer-up), "hang".
Scenario actions: "ok", "fail" (rc=1), "tf" (rc=0, one VM triple-faulted), "lk" (rc=0, a guest kernel reported a stuck CPU), "crash" (the
outer kernel panics in it), "hang" (the outer stops talking in it), "lockup" (the outer
kernel reports a CPU stuck, then says nothing more).
"""
import json
import os
import sys
import time


def take(state, key, actions):
    path = os.path.join(state, key)
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    return actions[min(n, len(actions) - 1)]


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main():
    plan = json.load(open(sys.argv[1]))
    state = sys.argv[2]
    cmdline = sys.argv[sys.argv.index("-append") + 1]
    only = next(w for w in cmdline.split() if w.startswith("tb.only="))[8:].split(",")
    boot = take(state, "boot", plan.get("boot", ["up"]))
    if boot == "crash":
        say("[    1.0] Kernel panic - not syncing: the fake outer died while booting")
        return
    if boot == "hang":
        time.sleep(3600)
    say("@@TB outer-up 1.00")
    for name in only:
        action = take(state, name, plan.get(name, ["ok"]))
        say(f"@@TB begin {name}")
        if action == "crash":
            say("[   42.0] BUG: TASK stack guard page was hit (the fake outer)")
            say("[   42.1] Kernel panic - not syncing: corrupted stack end detected")
            return
        if action == "hang":
            time.sleep(3600)
        if action == "lockup":
            for secs in (26, 52, 78):
                say(f"[  100.0] watchdog: BUG: soft lockup - CPU#0 stuck for {secs}s! [vcpu0:42]")
            time.sleep(3600)
        rc = 1 if action == "fail" else 0
        tf = 1 if action == "tf" else 0
        lk = 1 if action == "lk" else 0
        say(f"@@TB end {name} rc={rc} secs=0.5 tf={tf} lk={lk}")
    say("@@TB all-done")


if __name__ == "__main__":
    main()
