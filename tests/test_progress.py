"""Progress and logs: results on stdout, progress on stderr (plain timestamped lines away from a terminal),
and the same lines kept in the run directory as run.log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from adsformer import console as con
from adsformer.simulator import SimulatorConfig, simulate

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ")


def test_train_off_a_terminal_prints_timestamped_progress_on_stderr_and_keeps_run_log(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    simulate(SimulatorConfig.preset("tiny"), data)
    cmd = [sys.executable, "-c", "from adsformer.cli import main; main()", "train", "--data", str(data)]
    cmd += ["--out", str(run), "--model", "baseline", "--set", "epochs=2", "--set", "patience=5"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    # results on stdout, no progress among them
    assert "trained" in proc.stdout and "wrote" in proc.stdout
    assert "epoch 1/2" not in proc.stdout and not any(STAMP.match(x) for x in proc.stdout.splitlines())
    # progress on stderr: every line timestamped (the warning about few steps aside), one per epoch
    err = [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith("warning:")]
    assert err and all(STAMP.match(x) for x in err), proc.stderr
    assert sum("train ctr: epoch" in x for x in err) == 2
    assert any("build features" in x for x in err)
    assert any(re.search(r"train ctr: \d+/\d+ \(100%\)", x) for x in err)  # the bar's plain line at its end
    # the same lines, timestamped, in the run directory
    logged = (run / "run.log").read_text().splitlines()
    assert all(STAMP.match(x) for x in logged)
    assert [x for x in logged if "epoch" in x and "done in" in x] == [x for x in err if "done in" in x]
    assert any("warning: only" in x for x in logged)  # the warning is kept too


def test_plain_progress_lines_are_throttled_and_recorded(monkeypatch, capsys):
    monkeypatch.setattr(con, "PLAIN_EVERY_S", 3600.0)
    with con.recording() as lines, con.ProgressBar() as bar:
        job = bar.add_task("work", total=4, loss=0.5)
        for _ in range(3):
            bar.advance(job)
        assert lines == []  # none before the period is up or the task is done
        bar.update(job, advance=1, loss=0.25)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and len(lines) == 1 and STAMP.match(err[0])
    assert err[0].endswith(lines[0][20:])
    assert "work: 4/4 (100%), loss 0.2500, 0:00:00 elapsed" in err[0]
    monkeypatch.setattr(con, "PLAIN_EVERY_S", 0.0)
    with con.recording() as lines, con.ProgressBar() as bar:
        job = bar.add_task("work", total=10)
        bar.advance(job, 5)
    assert len(lines) == 1 and "5/10 (50%)" in lines[0] and "left" in lines[0]


def test_stage_prints_a_line_every_period_while_it_runs(monkeypatch, capsys):
    monkeypatch.setattr(con, "PLAIN_EVERY_S", 0.05)
    with con.recording() as lines, con.stage("slow step"):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert "slow step..." in lines[0] and re.search(r"✓ slow step \(0\.\d s\)", lines[-1])
    assert sum("slow step: still running" in x for x in lines) >= 2
    assert all(STAMP.match(x) for x in err.splitlines()) and err.count("still running") >= 2


def test_disabled_bar_and_quiet_console_print_nothing(monkeypatch, capsys):
    with con.recording() as lines, con.ProgressBar(disable=True) as bar:
        job = bar.add_task("work", total=1)
        bar.advance(job)
    monkeypatch.setattr(con.console, "quiet", True)
    with con.recording() as quiet_lines:
        con.log("rank 1 says nothing")
        con.warn("nor this")
    assert lines == quiet_lines == [] and capsys.readouterr().err == ""


@pytest.mark.parametrize("existing", ["", "2024-01-01 00:00:00 trained\n"])
def test_save_log_appends(tmp_path, existing):
    if existing:
        (tmp_path / "run.log").write_text(existing)
    con.save_log(tmp_path, ["2024-01-02 00:00:00 evaluated"])
    assert (tmp_path / "run.log").read_text() == existing + "2024-01-02 00:00:00 evaluated\n"


def test_stage_times_add_up_per_stage_in_order_and_round(monkeypatch):
    clock = iter([10.0, 11.0, 11.5, 12.0, 14.25, 15.0, 15.125, 20.0])
    monkeypatch.setattr(con.time, "perf_counter", lambda: next(clock))
    times = con.StageTimes()  # begins at 10.0
    with times.stage("read_s"):  # 11.0 -> 11.5
        pass
    with times.stage("fit_s"):  # 12.0 -> 14.25
        pass
    with times.stage("read_s"):  # 15.0 -> 15.125: a stage run twice adds up
        pass
    times.total()  # 20.0
    assert list(times.seconds) == ["read_s", "fit_s", "total_s"]
    assert times.seconds == {"read_s": 0.625, "fit_s": 2.25, "total_s": 10.0}
    assert times.rounded(1) == {"read_s": 0.6, "fit_s": 2.2, "total_s": 10.0}


def test_stage_times_skip_a_stage_that_failed():
    times = con.StageTimes()
    with pytest.raises(RuntimeError), times.stage("broken_s"):
        raise RuntimeError("boom")
    assert times.seconds == {}
