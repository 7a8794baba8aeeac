"""The client against a supervisor played by the test: handshake, messages both ways, forks."""

import os
import socket
import threading
import time
import unittest

from supervise_sdk import proto, section, profile
from supervise_sdk.segment import COUNTER, GAUGE, process_page_offset

from fake import FakeSupervisor, directory, read_all, read_page


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return False


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.sup = FakeSupervisor()
        self.client = self.sup.connect()

    def tearDown(self):
        self.sup.close()


class Handshake(ClientTest):
    def test_hello_then_welcome(self):
        self.assertEqual(self.sup.hello.proto, proto.PROTO_VERSION)
        self.assertEqual(self.sup.hello.pid, os.getpid())
        c = self.client
        self.assertEqual((c.name, c.instance, c.heartbeat_timeout), ("api", 2, 5.0))
        self.assertEqual(c.limits.memory_max, 100 << 20)
        main = read_page(self.sup.segment_fd, 0)
        self.assertEqual(main["writer_pid"], os.getpid())
        self.assertNotEqual(main["heartbeat"], 0, "connect beats once")

    def test_messages_reach_the_supervisor(self):
        c = self.client
        c.ready()
        c.ready()  # the second is not sent: it would be a protocol error
        c.status("serving ✓")
        c.event("warn", "low disk")
        c.close()
        self.assertEqual(self.sup.recv(), proto.Ready())
        self.assertEqual(self.sup.recv(), proto.Status("serving ✓"))
        self.assertEqual(self.sup.recv(), proto.Event("warn", "low disk"))
        self.assertEqual(self.sup.recv(), proto.Goodbye())

    def test_counters_gauges_and_fixed_slots_land_in_the_main_page(self):
        c = self.client
        jobs = c.counter("jobs")
        self.assertIs(c.counter("jobs"), jobs)
        jobs.inc()
        jobs.add(41)
        c.gauge("queue").set(7)
        c.requests.add(3)
        c.errors.inc()
        c.in_flight.set(2)
        main = read_page(self.sup.segment_fd, 0)
        self.assertEqual(main["metrics"], {"jobs": (COUNTER, 42), "queue": (GAUGE, 7)})
        self.assertEqual((main["requests"], main["errors"], main["in_flight"]), (3, 1, 2))


class FromSupervisor(ClientTest):
    def test_shutdown_sets_the_event_and_calls_back_once(self):
        called = []
        self.client.on_shutdown(called.append)
        self.sup.send(proto.Shutdown(2500))
        self.sup.send(proto.Shutdown(2500))
        self.assertTrue(self.client.shutdown_event.wait(5))
        self.assertTrue(wait_for(lambda: called == [2.5]))
        self.assertEqual(self.client.shutdown_deadline(), 2.5)
        # Registered late: called at once.
        late = []
        self.client.on_shutdown(late.append)
        self.assertEqual(late, [2.5])

    def test_memory_pressure_and_new_limits(self):
        seen = []
        self.client.on_memory_pressure(lambda b, l: seen.append((b, l)))
        self.sup.send(proto.NewLimits(proto.Limits(None, None, "pss")))
        self.sup.send(proto.MemoryPressure(90, 100))
        self.assertFalse(self.client.wait(5))
        self.assertEqual(seen, [(90, 100)])
        self.assertEqual(self.client.memory_pressure(), (90, 100, 1))
        self.assertEqual(self.client.limits.measure, "pss")

    def test_pings_are_answered_and_garbage_is_ignored(self):
        self.sup.send(b"\xff\xff")
        self.sup.send(b"")  # an empty packet reads as the end: nothing after would arrive
        self.sup.ours.close()

    def test_the_listener_outlives_garbage(self):
        self.sup.send(b"\x09")
        self.sup.send(b"\x01\xac")
        self.sup.send(proto.Ping(300))
        self.assertEqual(self.sup.recv(), proto.Pong(300))

    def test_a_callback_that_raises_does_not_stop_the_listener(self):
        self.client.on_memory_pressure(lambda b, l: 1 / 0)
        self.sup.send(proto.MemoryPressure(1, 2))
        self.sup.send(proto.Ping(7))
        self.assertEqual(self.sup.recv(), proto.Pong(7))


class Forks(ClientTest):
    def fork(self, child):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child()
            except BaseException:  # noqa: BLE001 - reported through the exit code
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        return pid

    def test_a_forked_process_writes_its_own_page(self):
        c = self.client
        jobs = c.counter("jobs")
        jobs.inc()

        def child():
            for _ in range(5):
                jobs.inc()
            c.counter("late").add(2)
            c.requests.add(4)
            c.heartbeat()
            c.after_fork()  # already done by os.fork: no second page
            c.ready()  # not the program's to say from here
            c.status("child")
            c.close()  # no goodbye from a forked process

        pid = self.fork(child)
        self.assertEqual(directory(self.sup.segment_fd)[:2], [pid, 0])
        page = read_page(self.sup.segment_fd, process_page_offset(0))
        self.assertEqual(page["writer_pid"], pid)
        self.assertEqual(page["metrics"], {"jobs": (COUNTER, 5), "late": (COUNTER, 2)})
        self.assertEqual(page["requests"], 4)
        self.assertNotEqual(page["heartbeat"], 0)
        total = read_all(self.sup.segment_fd)
        self.assertEqual(total["sums"]["jobs"], 6)
        self.assertEqual(read_page(self.sup.segment_fd, 0)["metrics"]["jobs"], (COUNTER, 1))
        # Only the status came from the child.
        self.assertEqual(self.sup.recv(), proto.Status("child"))
        self.sup.ours.settimeout(0.2)
        with self.assertRaises(socket.timeout):
            self.sup.recv()

    def test_grandchildren_and_a_full_directory(self):
        c = self.client
        jobs = c.counter("jobs")

        def child():
            jobs.inc()
            self.fork(lambda: jobs.add(10))

        self.fork(child)
        pids = [p for p in directory(self.sup.segment_fd) if p]
        self.assertEqual(len(pids), 2)
        self.assertEqual(read_all(self.sup.segment_fd)["sums"]["jobs"], 11)
        # Every page taken: a forked process still counts, into nowhere, without failing.
        full = (1).to_bytes(4, "little") * 1024
        os.pwrite(self.sup.segment_fd, full, 4096)

        def nowhere():
            assert not c.page_published
            jobs.add(100)

        self.fork(nowhere)
        self.assertEqual(read_page(self.sup.segment_fd, 0)["metrics"]["jobs"], (COUNTER, 0))


class Sections(ClientTest):
    def value(self, name):
        return read_all(self.sup.segment_fd)["sums"].get(name)

    def test_a_section_publishes_what_it_kept_and_its_peak(self):
        with section("grow"):
            kept = [bytearray(1000) for _ in range(2000)]
            tmp = bytearray(8 << 20)
            del tmp
        self.assertGreaterEqual(self.value("grow"), 2_000_000)
        self.assertLess(self.value("grow"), 4_000_000)
        self.assertGreaterEqual(self.value("grow.peak"), 7 << 20)
        self.assertEqual(self.value("grow.calls"), 1)
        self.assertTrue(read_page(self.sup.segment_fd, 0)["flags"] & 1, "heap published")
        del kept

    def test_profile_and_nested_sections(self):
        @profile
        def inner():
            tmp = bytearray(16 << 20)
            return len(tmp)

        @profile(name="outer")
        def outer():
            return inner() + inner()

        self.assertEqual(outer(), 32 << 20)
        name = inner.section_name
        self.assertTrue(name.endswith("<locals>.inner"), name)
        self.assertLess(self.value(name), 1 << 20, "nothing kept")
        self.assertGreaterEqual(self.value(name + ".peak"), 15 << 20)
        self.assertEqual(self.value(name + ".calls"), 2)
        # The inner sections reset the peak; the outer one kept what it had reached.
        self.assertGreaterEqual(self.value("outer.peak"), 15 << 20)

    def test_names_that_do_not_fit_are_refused_at_once(self):
        with self.assertRaises(ValueError):
            section("x" * 43)


class Standalone(unittest.TestCase):
    def test_not_under_supervise_everything_is_inert(self):
        import subprocess
        import sys

        code = (
            "import tracemalloc, supervise_sdk\n"
            "assert supervise_sdk.Client.from_env() is None\n"
            "with supervise_sdk.section('x'): pass\n"
            "print(tracemalloc.is_tracing())\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISE_")}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.assertEqual(out.stdout.strip(), "False")

    def test_a_bad_environment_is_an_error(self):
        import subprocess
        import sys

        code = "import supervise_sdk; supervise_sdk.Client.from_env()"
        env = dict(os.environ, SUPERVISE_CONTROL_FD="1", SUPERVISE_SEGMENT_FD="4")
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("not an fd number above 2", out.stderr)


if __name__ == "__main__":
    unittest.main()
