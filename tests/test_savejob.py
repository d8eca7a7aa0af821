"""The supervisor's save, step by step, against a scripted QMP: every path through
``migrate.SaveJob`` (completed and committed; refused; failed; abandoned at each
stage; QEMU gone), without a QEMU. The real save is in test_operations/test_lifecycle;
these pin what a real QEMU cannot be made to do on demand (a reply that comes after
the client left, a cancel that never ends)."""

from __future__ import annotations

import os

import pytest

from qemuwrap.runtime import migrate
from qemuwrap.runtime.qmp import CommandError, MonitorError


class Timer:
    def __init__(self, delay: float, callback):
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeQMP:
    """Records each call; the test answers them (``reply``) in the order it likes."""

    def __init__(self):
        self.calls: list[tuple[str, dict | None, object]] = []
        self.fds: list[int] = []

    def call(self, command, args=None, *, later, timeout, done, fds=None):
        assert timeout > 0
        for fd in fds or ():
            self.fds.append(os.dup(fd))  # what QEMU would hold
        self.calls.append((command, args, done))

    def pending(self) -> list[str]:
        return [c for c, _a, _d in self.calls]

    def reply(self, command: str, result=None, error: Exception | None = None) -> None:
        for i, (c, _a, done) in enumerate(self.calls):
            if c == command:
                del self.calls[i]
                done(None if error else (result if result is not None else {}), error)
                return
        raise AssertionError(f"{command} was not sent; pending: {self.pending()}")


class Job:
    """A SaveJob with its client's messages, its log and its timers captured."""

    def __init__(self):
        self.qmp = FakeQMP()
        self.timers: list[Timer] = []
        self.sent: list[dict] = []
        self.log: list[str] = []
        self.finished = 0
        r, w = os.pipe()
        self.r = r
        self.job = migrate.SaveJob(self.qmp, self.later, w, timeout=60, commit_timeout=30,
                                   report=self.sent.append, finished=self.finish,
                                   log=self.log.append)

    def later(self, delay, callback) -> Timer:
        timer = Timer(delay, callback)
        self.timers.append(timer)
        return timer

    def finish(self) -> None:
        self.finished += 1

    def live_timers(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def run_to_migrating(self, status: str = "running") -> None:
        self.job.start()
        self.qmp.reply("query-status", {"status": status})
        self.qmp.reply("migrate-set-capabilities")
        self.qmp.reply("migrate-set-parameters")
        if status == "running":
            self.qmp.reply("stop")
        self.qmp.reply("getfd")
        assert self.job.state == "migrating"
        assert self.sent == [{"event": "started"}]
        self.qmp.reply("migrate")
        self.job.on_migration("setup")
        self.job.on_migration("active")


@pytest.fixture
def j():
    job = Job()
    yield job
    os.close(job.r)
    for fd in job.qmp.fds:
        os.close(fd)


def test_a_save_runs_to_its_commit(j):
    j.job.start()
    # Two batches (QMP runs them in order): what to ask and set, then what to do.
    assert j.qmp.pending() == ["query-status", "migrate-set-capabilities",
                               "migrate-set-parameters"]
    assert j.qmp.calls[1][1] == {"capabilities": [{"capability": "events", "state": True}]}
    assert j.qmp.calls[2][1] == {"max-bandwidth": migrate.UNLIMITED}  # uncapped, as libvirt
    j.qmp.reply("query-status", {"status": "running"})
    j.qmp.reply("migrate-set-capabilities")
    assert j.qmp.pending() == ["migrate-set-parameters"]  # nothing done before all is set
    j.qmp.reply("migrate-set-parameters")
    assert j.qmp.pending() == ["stop", "getfd", "migrate"]
    assert j.qmp.calls[1][1] == {"fdname": migrate.FDNAME}
    assert j.qmp.calls[2][1] == {"uri": f"fd:{migrate.FDNAME}"}
    assert len(j.qmp.fds) == 1  # handed to QEMU with the command
    j.qmp.reply("stop")
    assert j.sent == []
    j.qmp.reply("getfd")
    assert j.job.fd is None  # our copy closed: QEMU holds its own
    assert j.sent == [{"event": "started"}]
    j.qmp.reply("migrate")
    j.job.on_migration("active")
    assert [t.delay for t in j.live_timers()] == [60]  # the stream's deadline
    j.job.on_migration("completed")
    assert j.sent == [{"event": "started"}, {"event": "completed"}]
    assert [t.delay for t in j.live_timers()] == [30]  # the client's time to commit
    assert j.job.commit() is True
    assert j.live_timers() == [] and j.finished == 1 and j.qmp.pending() == []


def test_a_paused_guest_is_not_stopped_nor_resumed(j):
    j.job.start()
    j.qmp.reply("query-status", {"status": "paused"})
    j.qmp.reply("migrate-set-capabilities")
    j.qmp.reply("migrate-set-parameters")
    assert j.qmp.pending() == ["getfd", "migrate"]  # no stop
    j.qmp.reply("getfd")
    j.qmp.reply("migrate")
    j.job.on_migration("active")
    j.job.abandon("save abandoned by its client")
    assert j.qmp.pending() == ["migrate_cancel"]
    j.qmp.reply("migrate_cancel")
    j.qmp.reply("query-migrate", {"status": "cancelled"})
    assert j.qmp.pending() == []  # no cont: it was paused before
    assert j.sent[-1] == {"error": "save abandoned by its client; the guest is as it was"}
    assert j.finished == 1


@pytest.mark.parametrize("status", ["shutdown", "postmigrate", "inmigrate"])
def test_only_a_running_or_paused_guest_is_saved(j, status):
    j.job.start()
    j.qmp.reply("query-status", {"status": status})
    j.qmp.reply("migrate-set-capabilities")
    j.qmp.reply("migrate-set-parameters")
    assert j.sent == [{"error": f"the guest is {status}; only a running or paused guest "
                                "can be saved"}]
    assert j.qmp.pending() == [] and j.finished == 1 and j.job.fd is None


def test_the_client_leaving_mid_stream_cancels_and_resumes(j):
    j.run_to_migrating()
    j.job.abandon("save abandoned by its client")
    assert j.qmp.pending() == ["migrate_cancel"]
    j.qmp.reply("migrate_cancel")
    j.qmp.reply("query-migrate", {"status": "cancelling"})
    assert j.qmp.pending() == []  # waits for the migration's end...
    j.job.on_migration("cancelling")
    j.job.on_migration("cancelled")  # ...which QEMU says in an event
    assert j.qmp.pending() == ["cont"]
    j.qmp.reply("cont")
    assert j.sent[-1] == {"error": "save abandoned by its client; the guest runs on"}
    assert j.finished == 1 and j.live_timers() == []


def test_a_cancel_that_never_ends_still_resumes_the_guest(j):
    j.run_to_migrating()
    j.job.abandon("save abandoned by its client")
    j.qmp.reply("migrate_cancel")
    j.qmp.reply("query-migrate", {"status": "cancelling"})
    (deadline,) = j.live_timers()
    assert deadline.delay == migrate.CANCEL_TIMEOUT
    deadline.callback()
    j.qmp.reply("cont")
    assert j.sent[-1]["error"].endswith("the guest runs on")


def test_leaving_before_the_stream_began_resumes_and_drops_late_replies(j):
    j.job.start()
    j.qmp.reply("query-status", {"status": "running"})
    j.job.abandon("save abandoned by its client")  # before anything was done
    j.qmp.reply("migrate-set-capabilities")  # late: must not go on with a save
    j.qmp.reply("migrate-set-parameters")   # nobody wants
    assert j.qmp.pending() == []  # nothing was stopped: nothing to resume
    assert j.finished == 1 and j.job.fd is None


def test_leaving_before_getfd_answered_cancels_what_may_run_and_resumes(j):
    j.job.start()
    j.qmp.reply("query-status", {"status": "running"})
    j.qmp.reply("migrate-set-capabilities")
    j.qmp.reply("migrate-set-parameters")
    j.job.abandon("save abandoned by its client")  # stop, getfd, migrate still to answer
    # migrate was sent: whatever it started is cancelled, then the guest resumed
    assert j.qmp.pending() == ["stop", "getfd", "migrate", "migrate_cancel"]
    j.qmp.reply("stop")
    j.qmp.reply("getfd")  # late: must not report "started"
    j.qmp.reply("migrate")
    j.qmp.reply("migrate_cancel")
    j.qmp.reply("query-migrate", {"status": "cancelled"})
    assert j.qmp.pending() == ["cont"]
    j.qmp.reply("cont")
    assert j.sent == [{"error": "save abandoned by its client; the guest runs on"}]
    assert j.finished == 1 and j.job.fd is None


def test_a_refused_migrate_is_undone(j):
    j.job.start()
    j.qmp.reply("query-status", {"status": "running"})
    j.qmp.reply("migrate-set-capabilities")
    j.qmp.reply("migrate-set-parameters")
    j.qmp.reply("stop")
    j.qmp.reply("getfd")
    j.qmp.reply("migrate", error=CommandError("migrate", "GenericError", "blocked"))
    j.qmp.reply("migrate_cancel")
    j.qmp.reply("query-migrate", {"status": "none"})
    j.qmp.reply("cont")
    assert j.sent[-1] == {"error": "QEMU refused 'migrate': blocked; the guest runs on"}
    assert j.finished == 1


def test_a_failed_stream_says_qemus_reason(j):
    j.run_to_migrating()
    j.job.on_migration("failed")
    j.qmp.reply("query-migrate", {"status": "failed",
                                  "error-desc": "Unable to write to file: No space left"})
    j.qmp.reply("cont")
    assert j.sent[-1] == {"error": "saving failed: Unable to write to file: No space left; "
                                   "the guest runs on"}
    assert j.job.commit() is False


def test_a_refused_step_is_undone(j):
    j.job.start()
    j.qmp.reply("query-status", {"status": "running"})
    j.qmp.reply("migrate-set-capabilities",
                error=CommandError("migrate-set-capabilities", "GenericError", "nope"))
    j.qmp.reply("migrate-set-parameters")  # late: dropped
    assert j.qmp.pending() == []  # nothing was stopped or started
    assert j.sent == [{"error": "QEMU refused 'migrate-set-capabilities': nope; the guest "
                                "is as it was"}]
    assert j.finished == 1


def test_a_stream_past_its_deadline_is_cancelled(j):
    j.run_to_migrating()
    (deadline,) = j.live_timers()
    deadline.callback()
    assert j.qmp.pending() == ["migrate_cancel"]
    j.qmp.reply("migrate_cancel")
    j.qmp.reply("query-migrate", {"status": "cancelled"})
    j.qmp.reply("cont")
    assert j.sent[-1]["error"] == "the save did not finish within 60 s; the guest runs on"


def test_no_commit_in_time_resumes_from_postmigrate(j):
    j.run_to_migrating()
    j.job.on_migration("completed")
    (deadline,) = j.live_timers()
    deadline.callback()
    assert j.qmp.pending() == ["cont"]  # nothing in flight: straight to cont
    j.qmp.reply("cont")
    assert "did not store the state in time" in j.sent[-1]["error"]
    assert j.job.commit() is False


def test_a_guest_that_cannot_be_resumed_is_said(j):
    j.run_to_migrating()
    j.job.on_migration("completed")
    j.job.abandon("save abandoned by its client")
    j.qmp.reply("cont", error=MonitorError("QEMU did not answer 'cont' within 5 s"))
    assert j.sent[-1]["error"] == ("save abandoned by its client; the guest could not be "
                                   "resumed (QEMU did not answer 'cont' within 5 s)")


def test_qemu_ending_ends_the_job(j):
    j.run_to_migrating()
    j.job.qemu_ended()
    assert j.sent[-1] == {"error": "QEMU ended during the save"}
    assert j.finished == 1 and j.live_timers() == []
    j.job.abandon("save abandoned by its client")  # the client leaving later: nothing
    j.job.on_migration("failed")
    assert j.qmp.pending() == [] and j.finished == 1


def test_a_completion_seen_before_getfds_reply_is_not_lost(j):
    j.job.start()
    j.qmp.reply("query-status", {"status": "running"})
    j.qmp.reply("migrate-set-capabilities")
    j.qmp.reply("migrate-set-parameters")
    j.qmp.reply("stop")
    j.job.on_migration("completed")  # an event read before the reply it follows
    j.qmp.reply("getfd")
    assert j.sent == [{"event": "started"}, {"event": "completed"}]
    assert j.job.commit() is True
