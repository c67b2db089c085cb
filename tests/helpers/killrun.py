"""Kill ``abm run`` at random moments and resume it until it completes (crash-consistency tests).

Run as a script (``python tests/helpers/killrun.py SPEC.json``) so that the
test process never forks after Numba has started threads. The script imports
:mod:`abm.cli` once, then runs each attempt in a forked child that calls
``abm.cli.main(["run", CONFIG, ...])`` (what ``python -m abm run`` does,
without the interpreter start-up, so that a kill lands in the run itself),
sends the child SIGKILL or SIGTERM after a random delay and resumes with
``--resume`` until an attempt exits on its own. A run that finishes before
every kill was sent is moved to ``<out>/rounds/`` and started again. With ``"subprocess": true``
every attempt is a real ``python -m abm run`` process instead.

Prints one JSON line: per run, the signals sent, each attempt's exit status
(negative: killed by that signal) and the stderr of any attempt that failed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def _child(argv: list[str], err: Path) -> int:
    pid = os.fork()
    if pid == 0:   # the child: abm run, stderr to a file
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.dup2(fd, 1)
        code = 1
        try:
            from abm.cli import main
            code = main(argv)
        except BaseException:  # noqa: BLE001 - a traceback is a failure the test reports
            import traceback
            traceback.print_exc()
            code = 99
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def _status(pid: int) -> int:
    _, st = os.waitpid(pid, 0)
    return -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


def _status_if_ended(pid: int) -> int | None:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done != pid:
        return None
    return -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


def _part_state(out: Path):
    """Inode and modification time of the .part (None if none): a resume replaces it."""
    for p in out.rglob("*.part"):
        try:
            st = p.stat()
            return st.st_ino, st.st_mtime_ns
        except OSError:
            return None
    return None


def _started(out: Path) -> bool:
    return any(out.rglob("*.part"))


def run_killed(spec: dict) -> dict:
    rng = random.Random(spec["seed"])
    out = Path(spec["out"])
    err = out.parent / f"{out.name}.stderr"
    base = ["run", spec["config"], "--out", str(out), "-q"]
    report = {"attempts": [], "signals": [], "errors": []}
    kills = list(spec["kills"])          # e.g. ["KILL", "KILL", "TERM"]
    max_delay = float(spec["max_delay_s"])
    first = True
    while True:
        argv = base if first else base + ["--resume"]
        sig = kills.pop(0) if kills else None
        before = _part_state(out)
        if spec.get("subprocess"):
            with open(err, "w") as fh:
                proc = subprocess.Popen([sys.executable, "-m", "abm"] + argv, stdout=fh,
                                        stderr=fh)
            pid = proc.pid
        else:
            pid = _child(argv, err)
        if sig is not None:
            if sig == "TERM":   # after the handlers are installed: this attempt writes
                t0 = time.monotonic()
                while _part_state(out) == before and time.monotonic() - t0 < 30:
                    time.sleep(0.005)
            # SIGTERM soon after start-up, so that it lands in the run rather than after it
            top = max_delay if sig == "KILL" else min(max_delay, 0.4)
            time.sleep(rng.uniform(float(spec.get("min_delay_s", 0.0)), top))
            code = proc.poll() if spec.get("subprocess") else _status_if_ended(pid)
            if code is not None:   # finished before the signal: nothing was sent
                kills.insert(0, sig)
                report["attempts"].append(code)
                if code != 0:
                    report["errors"].append(err.read_text()[-3000:])
                    break
                pid = None
            else:
                os.kill(pid, getattr(signal, f"SIG{sig}"))
                report["signals"].append(sig)
        if pid is None:
            code = 0
        else:
            code = proc.wait() if spec.get("subprocess") else _status(pid)
            report["attempts"].append(code)
        # SIGTERM: a clean stop (143); before the handlers exist (start-up) a plain death
        if code not in (0, -signal.SIGKILL, 128 + signal.SIGTERM, -signal.SIGTERM):
            report["errors"].append(err.read_text()[-3000:])
            break
        if code == 0 and kills:   # finished before every kill was sent: keep it, go again
            for final in (out / spec["name"]).glob("*.h5"):
                (out / "rounds").mkdir(exist_ok=True)
                final.rename(out / "rounds" / f"round{len(report['attempts'])}.h5")
            first = True
            continue
        if code == 0:
            break
        # killed before the .part existed: nothing to resume, start it again
        first = first and not (_started(out) or any(out.rglob("*.ckpt-*")))
    return report


def main(spec_path: str) -> int:
    specs = json.loads(Path(spec_path).read_text())
    from abm.cli import build_parser   # noqa: F401 - import abm once, before forking
    print(json.dumps([run_killed(s) for s in specs]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
