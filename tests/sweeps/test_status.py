"""dekr.sweeps.status: each state read from real run folders (and the queue's answer for submitted points)."""
from __future__ import annotations

import json
import os
import socket

from dekr.sweeps import Campaign
from dekr.sweeps.status import (
    DONE,
    FAILED,
    NEVER_RUN,
    PENDING,
    RUNNING,
    campaign_status,
    format_status,
    point_status,
)
from tests.sweeps.conftest import finished_run


def test_states_from_run_folders(campaign: Campaign) -> None:
    p0, p1, p2, _ = campaign.points
    finished_run(campaign.new_run(p0), [0.1, 0.4])
    run1 = finished_run(campaign.new_run(p1), [0.2], status="stopped")
    (run1 / "train.log").write_text("epoch 1\nTraceback ...\nKeyboardInterrupt\n")
    running = campaign.new_run(p2)
    (running / ".run.lock.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    statuses = campaign_status(campaign)
    assert [s.state for s in statuses] == [DONE, FAILED, RUNNING, NEVER_RUN]
    assert "stopped by a signal" in statuses[1].reason and statuses[1].log_tail.endswith("KeyboardInterrupt")
    text = format_status(statuses)
    assert "1 done  1 failed  1 running  1 never run  (of 4 points)" in text
    assert "--- point 1" in text and "KeyboardInterrupt" in text


def test_a_dead_holder_is_not_running(campaign: Campaign) -> None:
    run = campaign.new_run(campaign.points[0])
    (run / ".run.lock.json").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))
    (run / "train.log").write_text("Killed\n")
    status = campaign_status(campaign)[0]
    assert status.state == FAILED and "exited before training ended" in status.reason


def test_finished_without_the_metric_is_failed(campaign: Campaign) -> None:
    finished_run(campaign.new_run(campaign.points[0]), [])
    status = campaign_status(campaign)[0]
    assert status.state == FAILED and "finished without a val/AP" in status.reason
    assert "check_val_every_n_epoch" in status.reason


def test_submitted_points_follow_the_queue(campaign: Campaign) -> None:
    point = campaign.points[1]
    run = campaign.new_run(point)
    log = campaign.folder / "logs" / "41_1.out"
    (run / "submitted.json").write_text(json.dumps({"job": "41", "task": 1, "log": str(log)}))
    assert point_status(campaign, point, run, {"41_1": "PENDING"}).state == PENDING
    assert point_status(campaign, point, run, {"41_1": "RUNNING"}).state == RUNNING
    assert point_status(campaign, point, run, None).state == PENDING  # no squeue: the submission stands
    gone = point_status(campaign, point, run, {})
    assert gone.state == FAILED and "left the queue without a log" in gone.reason
    log.parent.mkdir()
    log.write_text("error: invalid value for --model.net.offset_block\n")
    failed = point_status(campaign, point, run, {})
    assert failed.state == FAILED and "invalid value" in failed.log_tail
    finished_run(run, [0.3])
    assert point_status(campaign, point, run, {}).state == DONE
