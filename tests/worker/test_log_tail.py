"""The worker's log tail of a failed study (``Study.log_tail``): the tasks run in-process on a
real database and broker, and a study fails for a real reason (its training diverges at a
learning rate of 10); what the task logged, its traceback last, is kept, nothing of other
threads, at most 50 lines, and a retry clears it."""

from __future__ import annotations

import logging
import threading

from tests.backend.servers import tiny
from tests.worker.test_tasks import add_study, get


def test_a_diverging_study_keeps_the_last_lines_its_worker_logged(wsettings, caplog):
    from worker import tasks

    caplog.set_level(logging.INFO, logger="curvscope.worker")   # as `curvscope worker` logs
    sid = add_study(wsettings, tiny(training={"seed": 17, "lr": 10.0}))
    assert tasks.start_study(sid)["outcome"] == "started"
    outcome = tasks.retrain_chunk(sid, 0)
    assert outcome["outcome"] == "failed" and "diverged" in outcome["error"]
    study = get(wsettings, sid)
    assert study.state == "failed" and study.error_type == "TrainingDivergedError"
    lines = study.log_tail.splitlines()
    assert 10 < len(lines) <= 50
    # what the task logged before it failed, then the traceback, its exception line last
    assert any(f"study {sid}: retraining chunk 0 (alpha 0.5" in line for line in lines)
    assert any(line.endswith(f"study {sid} failed:") for line in lines)
    assert "Traceback (most recent call last):" in lines
    assert any("curvscope/training/batched.py" in line for line in lines)   # where it broke
    assert lines[-1].startswith("curvscope.training.trainer.TrainingDivergedError: training "
                                "diverged")
    assert study.error in lines[-1]


def test_the_tail_keeps_the_traceback_when_the_log_level_drops_it(wsettings, caplog):
    from worker import tasks

    logging.getLogger("curvscope.worker").disabled = True          # nothing reaches the log
    try:
        sid = add_study(wsettings, tiny(training={"seed": 18, "lr": 10.0}))
        tasks.start_study(sid)
        assert tasks.retrain_chunk(sid, 0)["outcome"] == "failed"
    finally:
        logging.getLogger("curvscope.worker").disabled = False
    lines = get(wsettings, sid).log_tail.splitlines()
    assert lines[0] == f"study {sid} failed:" and "Traceback (most recent call last):" in lines
    assert "TrainingDivergedError" in lines[-1]


def test_the_handler_keeps_only_its_threads_last_lines():
    from worker.logtail import capture

    log = logging.getLogger("curvscope.worker.test")
    log.setLevel(logging.INFO)
    try:
        with capture(max_lines=50) as tail:
            for k in range(70):
                log.info("line %d", k)
            other = threading.Thread(target=lambda: log.warning("from the heartbeat"))
            other.start()
            other.join()
            log.info("two\nlines")
        log.info("after the task")
    finally:
        log.setLevel(logging.NOTSET)
    lines = tail.text().splitlines()
    assert len(lines) == 50 and tail.records == 71
    assert lines[0].endswith("line 22") and lines[-3].endswith("line 69")
    assert lines[-2].endswith("two") and lines[-1] == "lines"
    assert not any("heartbeat" in line or "after the task" in line for line in lines)
    assert logging.getLogger().handlers.count(tail) == 0           # removed after the task


def test_a_retry_clears_the_tail(wsettings):
    from backend import crud
    from backend.db import write_session

    sid = add_study(wsettings, tiny(training={"seed": 19}))
    with write_session(wsettings) as session:
        crud.fail(session, sid, "broke", "RuntimeError", log_tail="a\nb")
    assert get(wsettings, sid).log_tail == "a\nb"
    with write_session(wsettings) as session:
        crud.retry(session, sid)
    study = get(wsettings, sid)
    assert study.state == "queued" and study.log_tail is None and study.attempts == 2
