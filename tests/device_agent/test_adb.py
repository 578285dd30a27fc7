"""adb-shell against the loopback phone: pairing (with the fingerprint and progress the user
sees), shell, verified push, unplug/replug, and a phone that stops answering."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time

import pytest

from device_agent.adb_backend import Reconnector
from device_agent.adb_device import (
    PairingTimeout,
    Phone,
    PhoneCommandError,
    PhoneDisconnected,
    parse_tcp_address,
)
from device_agent.config import adb_key_path
from device_agent.properties import phone_properties


def test_first_pairing_asks_once_then_the_saved_key_signs(standin, tmp_path):
    key = adb_key_path(tmp_path / "agent")
    first = Phone(key, tcp=f"127.0.0.1:{standin.port}", auth_timeout_s=10)
    first.connect()
    assert standin.auth_prompts == 1 and key.exists() and key.with_suffix(".pub").exists()
    assert (key.stat().st_mode & 0o777) == 0o600
    first.close()
    again = Phone(key, tcp=f"127.0.0.1:{standin.port}", auth_timeout_s=10)
    again.connect()  # the phone remembers the key: a signature, no dialog
    assert standin.auth_prompts == 1
    assert again.shell("echo hello") == "hello\n"
    again.close()


def test_unknown_key_times_out_when_nobody_taps_allow(standin, tmp_path):
    standin.allow_new_keys = False
    phone = Phone(
        adb_key_path(tmp_path / "other"), tcp=f"127.0.0.1:{standin.port}", auth_timeout_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(PairingTimeout, match="nobody tapped Allow on the phone within 1 s"):
        phone.connect()
    assert time.monotonic() - started < 8


def test_pairing_logs_the_fingerprint_the_phone_shows_and_progress(standin, tmp_path, caplog):
    """Android's dialog shows MD5 of the key blob as colon-separated hex; the agent logs the
    same so the user can compare, then a progress line while it waits for the tap."""
    standin.allow_delay_s = 1.2
    key = adb_key_path(tmp_path / "agent")
    phone = Phone(key, tcp=f"127.0.0.1:{standin.port}", auth_timeout_s=10, pairing_log_every_s=0.4)
    with caplog.at_level(logging.INFO, "tailor.agent"):
        phone.connect()
    blob = base64.b64decode(key.with_suffix(".pub").read_text().split()[0])
    digest = hashlib.md5(blob).hexdigest().upper()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
    assert (
        f"does not know this computer's key yet: tap Allow on the phone (RSA "
        f"fingerprint {fingerprint}); waiting up to 10 s"
    ) in caplog.text
    assert "still waiting for Allow on the phone" in caplog.text
    assert "(key allowed)" in caplog.text and phone.shell("echo ok").strip() == "ok"
    phone.close()


def test_a_phone_that_stops_answering_is_a_disconnect_within_the_adb_timeout(standin, tmp_path):
    """A phone gone from the Wi-Fi keeps the socket open and says nothing: every ADB call
    ends after `transport_timeout_s` of silence, even one allowed to run for minutes."""
    phone = Phone(
        adb_key_path(tmp_path / "agent"),
        tcp=f"127.0.0.1:{standin.port}",
        auth_timeout_s=10,
        transport_timeout_s=1.0,
    )
    phone.connect()
    threading.Timer(0.5, standin.freeze).start()
    started = time.monotonic()
    with pytest.raises(PhoneDisconnected, match="lost during"):
        phone.shell("while :; do echo tick; sleep 0.1; done", timeout_s=300)
    assert time.monotonic() - started < 6 and not phone.connected
    started = time.monotonic()
    with pytest.raises(PhoneDisconnected, match="cannot connect"):
        phone.connect()  # still frozen: the handshake is bounded too
    assert time.monotonic() - started < 6
    standin.thaw()
    phone.connect()
    assert phone.shell("echo back").strip() == "back"
    phone.close()


def test_shell_properties_and_checked_commands(phone):
    props = phone_properties(phone)
    assert props.backend == "adb" and props.model == "SM-S928B" and props.soc == "SM8650"
    assert props.android_release == "14" and props.sdk == 34 and props.abi == "arm64-v8a"
    assert props.cpu_count == 8 and props.cpu_max_freq_khz[-1] == 3390000
    assert props.ram_bytes == 11834964 * 1024
    with pytest.raises(PhoneCommandError, match="exited 3"):
        phone.checked("echo boom; exit 3")


def test_push_verifies_checksums_and_skips_files_already_there(phone, standin, tmp_path):
    local = tmp_path / "graph.onnx"
    local.write_bytes(bytes(range(256)) * 3000)  # > one ADB packet
    small = tmp_path / "input_0.pb"
    small.write_bytes(b"tiny")
    files = {
        local: "/data/local/tmp/tailor/x/graph.onnx",
        small: "/data/local/tmp/tailor/x/case/input_0.pb",
    }
    assert sorted(phone.push_verified(files)) == sorted(files.values())
    on_phone = standin.sandbox / "data/local/tmp/tailor/x/graph.onnx"
    assert on_phone.read_bytes() == local.read_bytes()
    assert phone.push_verified(files) == []  # unchanged: skipped
    on_phone.write_bytes(b"corrupted")
    assert phone.push_verified(files) == ["/data/local/tmp/tailor/x/graph.onnx"]
    assert phone.device.stat("/data/local/tmp/tailor/x/graph.onnx")[1] == local.stat().st_size


def test_unplugged_mid_command_raises_and_reconnects_when_back(phone, standin):
    timer = threading.Timer(0.5, standin.unplug)
    timer.start()
    started = time.monotonic()
    with pytest.raises(PhoneDisconnected, match="lost during"):
        phone.shell("sleep 5; echo done", timeout_s=30)
    assert time.monotonic() - started < 4 and not phone.connected
    ready = Reconnector(phone, max_backoff_s=0.2)
    assert ready() is False  # still unplugged
    standin.replug()
    deadline = time.monotonic() + 5
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert phone.connected and phone.shell("echo back").strip() == "back"


def test_a_command_past_its_overall_limit_is_no_disconnect(phone):
    """The phone answers all along (keep-alive output) but the command outlives its limit:
    the candidate's graph is too slow, not the phone gone."""
    from device_agent.adb_device import PhoneCommandTimeout
    from device_agent.failures import failure_kind

    with pytest.raises(PhoneCommandTimeout, match="still running after 2 s") as error:
        phone.shell("while :; do echo tick; sleep 0.2; done", timeout_s=2)
    assert failure_kind(error.value) == "candidate"


def test_a_tcp_address_is_checked_when_the_phone_is_made_and_a_name_or_ipv6_reaches_it(
    standin, tmp_path
):
    key = adb_key_path(tmp_path / "agent")
    for address, says in (
        ("127.0.0.1:abc", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
        (":5555", "expected HOST:PORT"),
        ("::1", "an IPv6 address goes in brackets"),
        ("[::1", "expected [IPv6]:PORT"),
        ("[nope]:5555", "'nope' is no IPv6 address"),
        ("bad host", "'bad host' is no host name or IP address"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            Phone(key, tcp=address)
    assert parse_tcp_address("phone.local") == ("phone.local", 5555)
    assert parse_tcp_address("[fe80::1]:5037") == ("fe80::1", 5037)
    phone = Phone(key, tcp=f"localhost:{standin.port}", auth_timeout_s=10)
    phone.connect()  # a host name, resolved when connecting
    assert phone.shell("echo hello") == "hello\n"
    phone.close()
