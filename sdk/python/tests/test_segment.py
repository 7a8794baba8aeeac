"""The segment as the spec lays it out: the shared byte examples, registration, claims."""

import os
import threading
import unittest

from supervise_sdk.segment import (
    COUNTER,
    GAUGE,
    PROCESS_PAGES,
    Counter,
    Gauge,
    Page,
    Segment,
    SegmentError,
)

from fake import examples, make_segment, read_all, read_page


def apply(seg: Segment, ops):
    page = seg.main_page()
    for op in ops:
        kind, *args = op
        if kind == "counter":
            Counter(args[0], page, page.register(args[0], COUNTER)).add(args[1])
        elif kind == "gauge":
            Gauge(args[0], page, page.register(args[0], GAUGE)).set(args[1])
        elif kind in ("requests", "errors"):
            Counter(kind, page, page.w + {"requests": 8, "errors": 9}[kind]).add(args[0])
        elif kind == "in_flight":
            Gauge(kind, page, page.w + 10).set(args[0])
        elif kind == "heap":
            page.set_heap(*args)
        elif kind == "claim":
            page = seg.claim()
        else:
            raise AssertionError(f"unknown op {kind}")


class Examples(unittest.TestCase):
    def test_segment_bytes_are_as_the_examples_say(self):
        spec = examples()["segment"]
        from supervise_sdk import segment

        self.assertEqual(spec["page_size"], segment.PAGE)
        self.assertEqual(spec["process_pages"], segment.PROCESS_PAGES)
        self.assertEqual(spec["file_size"], segment.FILE_SIZE)
        for case in spec["cases"]:
            fd = make_segment()
            try:
                apply(Segment(os.dup(fd)), case["ops"])
                for want in case["expect"]:
                    at = want["offset"]
                    if want.get("u32") == "pid":
                        got = int.from_bytes(os.pread(fd, 4, at), "little")
                        self.assertEqual(got, os.getpid(), f"{case['name']} @{at}")
                    else:
                        n = len(bytes.fromhex(want["hex"]))
                        self.assertEqual(
                            os.pread(fd, n, at).hex(" "), want["hex"], f"{case['name']} @{at}"
                        )
                read = case.get("read")
                if read:
                    got = read_all(fd)
                    self.assertEqual(got["sums"], read["metrics"], case["name"])
                    self.assertEqual(got["processes"], read["processes"], case["name"])
                    if "requests" in read:
                        self.assertEqual(got["requests"], read["requests"], case["name"])
            finally:
                os.close(fd)


class Registration(unittest.TestCase):
    def setUp(self):
        self.fd = make_segment()
        self.seg = Segment(os.dup(self.fd))
        self.page = self.seg.main_page()

    def tearDown(self):
        os.close(self.fd)

    def test_the_same_name_gives_the_same_slot_and_keeps_its_kind(self):
        a = self.page.register("jobs", COUNTER)
        self.assertEqual(self.page.register("jobs", COUNTER), a)
        with self.assertRaises(SegmentError):
            self.page.register("jobs", GAUGE)

    def test_names_are_one_to_48_bytes(self):
        self.page.register("é" * 24, COUNTER)
        for bad in ("", "x" * 49, "é" * 25):
            with self.assertRaises(ValueError):
                self.page.register(bad, COUNTER)

    def test_a_full_table_refuses_new_names_but_finds_old_ones(self):
        for i in range(61):
            self.page.register(f"m{i}", GAUGE)
        with self.assertRaises(SegmentError):
            self.page.register("one_more", GAUGE)
        self.page.register("m60", GAUGE)
        self.assertEqual(len(read_page(self.fd, 0)["metrics"]), 61)

    def test_threads_counting_at_once_lose_nothing(self):
        c = Counter("n", self.page, self.page.register("n", COUNTER))

        def work():
            for _ in range(20000):
                c.inc()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(read_page(self.fd, 0)["metrics"]["n"], (COUNTER, 80000))

    def test_gauges_stay_within_u64(self):
        g = Gauge("g", self.page, self.page.register("g", GAUGE))
        g.set(5)
        g.add(-10)
        self.assertEqual(g.get(), 0)
        g.set(1 << 70)
        self.assertEqual(g.get(), (1 << 64) - 1)
        with self.assertRaises(ValueError):
            Counter("c", self.page, self.page.register("c", COUNTER)).add(-1)


class Attach(unittest.TestCase):
    def test_what_is_not_a_segment_is_refused(self):
        r, w = os.pipe()
        with self.assertRaises(SegmentError):
            Segment(r)
        os.close(w)
        fd = os.memfd_create("short", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 4096)
        import fcntl

        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        with self.assertRaises(SegmentError):
            Segment(fd)
        fd = make_segment()
        os.pwrite(fd, (1).to_bytes(4, "little"), 8)
        with self.assertRaises(SegmentError):
            Segment(fd)

    def test_claims_take_free_pages_until_none_is_left(self):
        fd = make_segment()
        seg = Segment(os.dup(fd))
        seg.main_page()
        pages = [seg.claim() for _ in range(PROCESS_PAGES)]
        self.assertEqual(len({p.offset for p in pages}), PROCESS_PAGES)
        with self.assertRaises(SegmentError):
            seg.claim()
        # A private page takes writes and publishes nothing.
        nowhere = Page(None, 0)
        Counter("x", nowhere, nowhere.register("x", COUNTER)).inc()
        self.assertFalse(nowhere.published)
        os.close(fd)


if __name__ == "__main__":
    unittest.main()
