"""The channel's encoding against the byte examples the Rust crate's tests read too."""

import unittest

from supervise_sdk import proto

from fake import examples

LEVEL = {"Debug": "debug", "Info": "info", "Warn": "warn", "Error": "error"}


def limits(d):
    return proto.Limits(d["memory_max"], d["memory_warn_at"], d["measure"].lower())


def message(m):
    """A message from serde's JSON form of the Rust enums."""
    if isinstance(m, str):
        return {"Ready": proto.Ready, "Goodbye": proto.Goodbye}[m]()
    (variant, f), = m.items()
    return {
        "Hello": lambda: proto.Hello(f["proto"], f["pid"], f["sdk_version"]),
        "Status": lambda: proto.Status(f["text"]),
        "Event": lambda: proto.Event(LEVEL[f["level"]], f["text"]),
        "Pong": lambda: proto.Pong(f["seq"]),
        "Welcome": lambda: proto.Welcome(
            f["name"], f["instance"], f["heartbeat_timeout_ms"], limits(f["limits"])
        ),
        "Ping": lambda: proto.Ping(f["seq"]),
        "Shutdown": lambda: proto.Shutdown(f["deadline_ms"]),
        "Limits": lambda: proto.NewLimits(limits(f)),
        "MemoryPressure": lambda: proto.MemoryPressure(f["bytes"], f["limit"]),
    }[variant]()


def unhex(s):
    return bytes.fromhex(s)


class Examples(unittest.TestCase):
    ex = examples()

    def test_child_messages_encode_as_the_examples_say(self):
        for case in self.ex["child"]:
            msg = message(case["message"])
            self.assertEqual(proto.encode(msg).hex(" "), case["bytes"], msg)
            self.assertEqual(proto.decode_child(unhex(case["bytes"])), msg)

    def test_supervisor_messages_decode_as_the_examples_say(self):
        for case in self.ex["supervisor"]:
            msg = message(case["message"])
            self.assertEqual(proto.decode_supervisor(unhex(case["bytes"])), msg)
            self.assertEqual(proto.encode(msg).hex(" "), case["bytes"], msg)

    def test_varints(self):
        for value, hexed in self.ex["varints"]:
            self.assertEqual(proto.varint(value).hex(" "), hexed)

    def test_non_minimal_forms_are_accepted(self):
        for case in self.ex["accepted_child"]:
            self.assertEqual(proto.decode_child(unhex(case["bytes"])), message(case["message"]))

    def test_malformed_packets_are_rejected_for_the_reason_given(self):
        words = {"trailing": "after a complete message"}
        for key, decode in (
            ("malformed_child", proto.decode_child),
            ("malformed_supervisor", proto.decode_supervisor),
        ):
            for case in self.ex[key]:
                with self.assertRaises(proto.ProtoError, msg=case["bytes"]) as caught:
                    decode(unhex(case["bytes"]))
                want = words.get(case["error"], case["error"])
                self.assertIn(want, str(caught.exception), case["bytes"])


class Limits(unittest.TestCase):
    def test_text_is_counted_in_bytes_and_clipped_at_a_character(self):
        long = "✓" * (proto.MAX_TEXT // 3 + 1)
        with self.assertRaises(proto.ProtoError):
            proto.encode(proto.Status(long))
        clipped = proto.clip_text(long)
        self.assertEqual(len(clipped.encode()), proto.MAX_TEXT // 3 * 3)
        self.assertEqual(proto.decode_child(proto.encode(proto.Status(clipped))).text, clipped)

    def test_received_text_over_the_limit_is_rejected(self):
        packet = b"\x00" + proto.varint(proto.MAX_TEXT + 1) + b"a" * (proto.MAX_TEXT + 1)
        packet += b"\x00\x00\x00\x00\x00"
        with self.assertRaises(proto.ProtoError):
            proto.decode_supervisor(packet)

    def test_a_huge_length_prefix_is_cut_short_without_allocating(self):
        for claimed in (1 << 30, (1 << 64) - 1):
            packet = b"\x00" + proto.varint(claimed) + b"abc"
            with self.assertRaises(proto.ProtoError) as caught:
                proto.decode_supervisor(packet)
            self.assertIn("cut short", str(caught.exception))

    def test_an_oversized_packet_is_rejected_before_parsing(self):
        with self.assertRaises(proto.ProtoError) as caught:
            proto.decode_supervisor(b"\x01" * (proto.MAX_PACKET + 1))
        self.assertIn("longer than", str(caught.exception))

    def test_numbers_outside_their_type_are_refused(self):
        with self.assertRaises(proto.ProtoError):
            proto.encode(proto.Hello(1 << 16, 1, "x"))
        with self.assertRaises(proto.ProtoError):
            proto.encode(proto.Pong(-1))


if __name__ == "__main__":
    unittest.main()
