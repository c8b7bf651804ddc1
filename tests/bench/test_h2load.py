"""The gRPC driver over h2load: the request file it sends, and what is read from h2load's
output (real outputs of h2load 1.52 against `m2mauth serve`, captured in fixtures/)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from bench.h2load import (
    H2loadSummary,
    command,
    grpc_frame,
    ok_calls,
    parse_summary,
    read_latencies,
    write_request_file,
)
from bench.server import BenchError

from m2mauth.v1 import token_service_pb2 as token_pb

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_request_file_is_one_uncompressed_length_prefixed_message(tmp_path: Path) -> None:
    request = token_pb.IssueTokenRequest(
        grant_type="client_credentials", client_id="c" * 20, client_secret="s" * 300
    )
    message = request.SerializeToString()
    assert len(message) > 255  # the length needs more than its lowest byte

    body = write_request_file(tmp_path / "issue.grpc", message).read_bytes()

    flag, length = struct.unpack(">BI", body[:5])
    assert flag == 0
    assert length == len(message) == len(body) - 5
    assert token_pb.IssueTokenRequest.FromString(body[5:]) == request
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"


def test_a_timed_run_is_parsed_and_every_call_with_an_answer_is_ok() -> None:
    summary = parse_summary((FIXTURES / "h2load-introspect-c64.txt").read_text())

    assert summary == H2loadSummary(
        seconds=3.01, done=17451, succeeded=17451, status_2xx=17451, data_bytes=3856671
    )
    # Introspect's answer there: 216 bytes of message + the 5-byte prefix.
    assert ok_calls(summary, 221) == 17451
    # Had the answers been one byte larger, some calls would have had none.
    assert ok_calls(summary, 222) == 3856671 // 222 < 17451


def test_grpc_errors_are_http_200_without_data_and_count_as_errors() -> None:
    # IssueToken with a wrong secret: h2load says 20 succeeded, but no answer had a message.
    summary = parse_summary((FIXTURES / "h2load-errors.txt").read_text())

    assert summary.succeeded == summary.status_2xx == summary.done == 20
    assert summary.data_bytes == 0
    assert summary.seconds == pytest.approx(0.01463)
    assert ok_calls(summary, 597) == 0


def test_output_without_a_summary_is_an_error() -> None:
    text = (FIXTURES / "h2load-introspect-c64.txt").read_text()
    truncated = text[: text.index("traffic:")]
    with pytest.raises(BenchError, match="unexpected h2load output"):
        parse_summary(truncated)


def test_latencies_come_from_the_per_request_log_sorted() -> None:
    latencies = read_latencies(FIXTURES / "h2load-introspect.log")

    assert len(latencies) == 6
    assert latencies == sorted(latencies)
    assert latencies[0] == pytest.approx(0.000939)
    assert latencies[-1] == pytest.approx(0.016790)


def test_the_command_matches_wrk_one_connection_per_call_in_flight(tmp_path: Path) -> None:
    args = command(
        "h2load",
        "http://127.0.0.1:1/m2mauth.v1.TokenService/IssueToken",
        tmp_path / "issue.grpc",
        concurrency=64,
        seconds=10,
        log=tmp_path / "log",
    )
    assert "-c64" in args
    assert "-m1" in args
    assert "-D10" in args
    assert args[args.index("-d") + 1] == str(tmp_path / "issue.grpc")
    headers = [args[i + 1] for i, arg in enumerate(args) if arg == "-H"]
    assert headers == ["content-type: application/grpc", "te: trailers"]
    assert args[-1].startswith("http://")  # h2c with prior knowledge: h2load's default
